"""Differentiable architecture search (DARTS, Liu et al. 2019) with the latency budget in its loss.

The gradient work runs in Ray workers (`_darts_torch.search`, the only place that imports torch):
architecture logits per cell edge over the ops (NB201's one cell, or the DARTS space's normal and
reduction cells, `_darts_cells_torch`), mixed ops on the space's shared supernet weights,
first-order bilevel optimisation (weights on the training split, logits on the validation split),
and the budget's latency as the expected latency of the relaxed cell, in ProxylessNAS's
additive or MnasNet's multiplicative form. Plain DARTS collapses to parameter-free ops; the
`beta` guard adds beta-DARTS's regulariser (the mean logsumexp of each edge's logits, its weight
rising linearly over the epochs).

The latency table is priced first, as one Ray task on an otherwise idle machine; then one search
per latency target (`targets`: fractions of the job's latency budget) runs as its own Ray task; each derives a cell that is asked first and evaluated by the job's evaluator like any
candidate: with `derivation: budget` the most probable cell whose estimated latency lies within
10 % under its target (the argmax of a relaxed cell drifts off the target its expectation met),
with `argmax` the strongest op per edge (on the DARTS space: per node the two strongest inputs,
as the paper derives). Each layer's bits are relaxed too on NB201 (EdMIPS) when a BitOps or size
budget is set; on the DARTS space the derived cell starts at the mildest compression. After them the strategy goes on as regularized evolution
over the joint genome, its population seeded by every result, so compression is searched too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field

from cosearch.compressors import precision_genes
from cosearch.core.errors import SpecError
from cosearch.core.objectives import Goals, base_metric
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, OneShotStrategy, Work
from cosearch.strategies.evolution import RegularizedEvolution

SPACES = ("nb201", "darts")  # the cell spaces the relaxation is written for
BITS_SPACES = ("nb201",)  # where each layer's bits are relaxed too
COSTS = "darts:costs"  # the work key of the latency table


@STRATEGIES.register("darts")
class DartsSearch(OneShotStrategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        epochs: Annotated[int, Field(ge=1)] = 10,
        targets: Sequence[float] = (0.5, 0.75, 1.0),
        loss: Literal["additive", "multiplicative"] = "additive",
        latency_weight: Annotated[float, Field(ge=0)] = 0.2,
        collapse_guard: Literal["beta", "gdas", "none"] = "beta",
        order: Literal[1, 2] = 1,
        beta_weight: Annotated[float, Field(ge=0)] = 0.5,
        arch_learning_rate: Annotated[float, Field(gt=0)] = 0.01,
        bits_weight: Annotated[float, Field(ge=0)] = 0.2,
        population_size: Annotated[int, Field(ge=2)] = 10,
        sample_size: Annotated[int, Field(ge=1)] = 3,
        derivation: Literal["budget", "argmax"] = "budget",
    ) -> None:
        super().__init__(space, goals, seed)
        self.seed = seed
        name = space.space.registry_name
        if name and name not in SPACES:
            raise SpecError("strategy", "darts", f"a job whose search_space is one of {list(SPACES)} (got {name!r})")
        if not targets or any(not 0 < t <= 4 for t in targets):
            raise SpecError("strategy.targets", list(targets), "fractions of the latency budget in (0, 4]")
        self.budget = next(
            (c for c in goals.constraints if base_metric(c.metric) == "latency_ms" and c.op == "<="), None
        )
        # A budget that weight bits change (BitOps or size) relaxes each layer's bits too (EdMIPS).
        bits_budget = next((c for c in goals.constraints if c.metric in ("bitops", "size_kb") and c.op == "<="), None)
        widths = precision_genes()  # the genes that set each layer's weight and input bits
        bits = sorted(space.options[widths["weights"]])
        relax_bits = bits_budget is not None and len(bits) > 1 and bits_weight > 0 and name in (*BITS_SPACES, None)
        self.settings = {
            "epochs": epochs,
            "loss": loss,
            "latency_weight": latency_weight if self.budget is not None else 0.0,
            "collapse_guard": collapse_guard,
            "beta_weight": beta_weight,
            "arch_learning_rate": arch_learning_rate,
            "order": order,
            "derivation": derivation,
            "weight_options": bits if relax_bits else None,
            "bits_metric": bits_budget.metric if relax_bits else None,
            "bits_target": bits_budget.bound if relax_bits else None,
            "bits_weight": bits_weight if relax_bits else 0.0,
            "input_bits": max(space.options[widths["inputs"]]),
            "input_options": sorted(space.options[widths["inputs"]]) if relax_bits else None,
        }
        priced = self.settings["latency_weight"] > 0
        self.targets = tuple(float(t) for t in targets) if priced else (1.0,)  # no latency term: one plain search
        self.searches: dict[str, dict[str, Any]] = {}  # work key -> what its search derived
        self.costs: dict[str, Any] | None = None  # the latency table (`COSTS` work) while searches need it
        self.then = RegularizedEvolution(space, goals, seed, population_size, sample_size)

    def _key(self, target: float) -> str:
        return f"darts:{target:g}"

    def work(self) -> list[Work]:
        pending = [t for t in self.targets if self._key(t) not in self.searches]
        priced = self.settings["latency_weight"] > 0
        if pending and priced and self.costs is None:  # the table every target's search reads, priced once
            args = {"metric": self.budget.metric, "seed": self.seed}
            return [Work(COSTS, "cosearch.strategies._darts_torch:price", args, "DARTS latency table")]
        out = []
        for target in pending:
            key = self._key(target)
            args = {**self.settings, "seed": self.seed * 1000 + self.targets.index(target), "metric": None}
            if priced:
                args.update(metric=self.budget.metric, target=self.budget.bound * target, cost_table=self.costs)
            out.append(Work(key, "cosearch.strategies._darts_torch:search", args, f"DARTS search for {key}"))
        return out

    def worked(self, key: str, output: Any) -> None:
        if key == COSTS:  # stored by the run, so a resumed run is handed it back rather than keeping it here
            self.costs = output
            return
        widths = tuple(precision_genes().values())  # the search's chosen bits come under these genes' names
        arch = output.get("arch") or {"cell": output["cell"]}  # runs before the DARTS space stored only the cell
        # the bits the search chose per slot, every other compression gene at its mildest (searched after)
        candidate = self.space.extreme(arch, mildest=True, searched={gene: output.get(gene) or {} for gene in widths})
        kept = ("arch", "cell", "target", "expected", "derived_estimate", *widths)
        self.searches[key] = {k: output[k] for k in kept if k in output}
        self.to_ask.append(self.space.encode(candidate))
        # The evolution after the searches breeds from their cells at once, not from random samples.
        self.then.asked = max(self.then.asked, self.then.population_size)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "searches": self.searches}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.searches = {k: dict(v) for k, v in state["searches"].items()}
