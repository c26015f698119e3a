"""Any cosearch strategy as a Ray Tune `Searcher`, driving your own Tune trainable.

    from cosearch.integrations.tune import CosearchSearcher, candidate_of

    searcher = CosearchSearcher(space={"name": "nb201", "channels": 16}, strategy="gp",
                                objectives=["accuracy", "latency_ms"], budgets=["latency_ms <= 2"],
                                compression=COMPRESSION)  # the job file's section
    tune.Tuner(my_trainable, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=50)).fit()

Each trial's config holds one joint candidate (`config["candidate"]`: architecture and
compression policy as JSON); `candidate_of(config)` rebuilds it, `build_model(config, ...)` gives
its network with the policy applied. The trainable reports the objectives' and budgets' metrics
(`accuracy`, `latency_ms`, ... as cosearch names them; `latency_ms` stands for
`latency_ms@local-cpu`). The strategy is told every completed trial, and ranks multi-objective
results by cosearch's constrained Pareto dominance (Tune's schedulers are single-metric: the
searcher reports `metric`/`mode` of the first objective to them). `pareto()` gives the feasible
front of the trials so far. `save` / `restore` keep the strategy's state and the trials in flight,
so a restored Tuner goes on where it stopped. Repeated proposals are filtered as in `cosearch run`.

Ray Tune is an optional extra (`pip install "ray[tune]"`); cosearch imports it only here.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from cosearch.core.candidate import Candidate
from cosearch.core.objectives import DEFAULT_DEVICE, base_metric
from cosearch.core.pareto import pareto_front
from cosearch.core.result import Result

CONFIG_KEY = "candidate"


class CosearchSearcher(Searcher):
    """A cosearch strategy behind Ray Tune's `Searcher` interface (module docstring).

    `space`: a search space name or its job-file mapping (`{"name": "nb201", "channels": 16}`);
    `strategy`: a strategy name, its parameters in `strategy_params`; `objectives`, `budgets` and
    `compression` as in a job file. Bad values raise `SpecError` naming the field, as a job does.
    """

    def __init__(
        self,
        space: str | Mapping[str, Any] = "nb201",
        strategy: str = "regularized_evolution",
        objectives: Sequence[str] = ("accuracy",),
        budgets: Sequence[str] = (),
        compression: Mapping[str, Any] | None = None,
        strategy_params: Mapping[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        from cosearch import build
        from cosearch.job import spec_from_dict
        from cosearch.strategies import Deduplicated

        self.job = spec_from_dict(
            {
                "search_space": {"name": space} if isinstance(space, str) else dict(space),
                "compression": dict(compression or {}),
                "strategy": {"name": strategy, **dict(strategy_params or {})},
                "objectives": list(objectives),
                "budgets": list(budgets),
                "evaluator": {"name": "synthetic"},  # never used: the trainable evaluates
                "resources": {"seed": seed},
            }
        )
        from cosearch.core.errors import SpecError
        from cosearch.strategies import STRATEGIES

        build.validate_strategy(self.job)
        if getattr(STRATEGIES.get(strategy), "needs_data", False):
            raise SpecError("strategy", strategy, "a strategy that does not train on data itself (not darts or enas)")
        self.goals = self.job.goals()
        first = self.goals.objectives[0]
        super().__init__(metric=_reported_name(first.metric), mode=first.direction)
        self.strategy = build.make_strategy(self.job)
        self.driver = Deduplicated(self.strategy)
        self.running: dict[str, Candidate] = {}  # trial id -> its candidate
        self.completed: list[Result] = []

    # --- Searcher --------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # the strategy ranks by the job's goals; Tune's metric and mode only label results

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        candidate = self.driver.ask(busy=(self.running_keys(),))
        if candidate is None:
            return None  # every proposal repeats a known candidate: Tune waits for results
        self.running[trial_id] = candidate
        return {CONFIG_KEY: candidate.to_json()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        candidate = self.running.pop(trial_id, None)
        if candidate is None:
            return
        metrics = _metrics_of(result or {}, self.goals.metrics)
        if error or result is None or len(metrics) < len(self.goals.metrics):
            missing = sorted(set(self.goals.metrics) - set(metrics))
            told = Result.failed(candidate, "trial errored" if error else f"trial reported no {missing}")
        else:
            told = Result(candidate, "ok", metrics)
        self.completed.append(told)
        self.driver.tell(candidate, told)

    def save(self, checkpoint_path: str) -> None:
        state = {
            "strategy": self.strategy.state_dict(),
            "running": {tid: c.to_json() for tid, c in self.running.items()},
            "completed": [r.to_json() for r in self.completed],
        }
        Path(checkpoint_path).write_bytes(pickle.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        state = pickle.loads(Path(checkpoint_path).read_bytes())
        self.strategy.load_state_dict(state["strategy"])
        self.running = {tid: Candidate.from_json(c) for tid, c in state["running"].items()}
        self.completed = [Result.from_json(r) for r in state["completed"]]
        self.driver.answered.update((r.candidate.key, r) for r in self.completed)

    # --- cosearch's side ---------------------------------------------------------------------
    def running_keys(self) -> set[str]:
        return {c.key for c in self.running.values()}

    def pareto(self) -> list[Result]:
        """The completed trials on the constrained Pareto front that meet every budget."""
        feasible = [r for r in self.completed if self.goals.feasible(r)]
        if not feasible:
            return []
        values, violations = self.goals.arrays(feasible)
        return [feasible[i] for i in pareto_front(values, violations)]


def candidate_of(config: Mapping[str, Any]) -> Candidate:
    """The joint candidate of a trial's config."""
    return Candidate.from_json(config[CONFIG_KEY])


def build_model(config: Mapping[str, Any], space: Any, input_shape: Sequence[int], num_classes: int) -> Any:
    """The trial's network (`space`: the searcher's space name or mapping) with its compression
    policy applied (fake quantization, masks, pruned channels, ...), ready to train."""
    from cosearch import build
    from cosearch.compressors import compress, reshape
    from cosearch.job import spec_from_dict

    job = spec_from_dict({"search_space": {"name": space} if isinstance(space, str) else dict(space)})
    candidate = candidate_of(config)
    model = build.make_space(job).build(candidate.arch, tuple(input_shape), num_classes)
    return compress(reshape(model, candidate.policy, tuple(input_shape)), candidate.policy)


def _reported_name(metric: str) -> str:
    """The name a trainable reports `metric` under: the base name for the default device."""
    base, _, device = metric.partition("@")
    return base if device == DEFAULT_DEVICE else metric


def _metrics_of(result: Mapping[str, Any], metrics: Sequence[str]) -> dict[str, float]:
    out = {}
    for metric in metrics:
        for name in (metric, _reported_name(metric), base_metric(metric)):
            value = result.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[metric] = float(value)
                break
    return out
