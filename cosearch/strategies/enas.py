"""ENAS (Pham et al. 2018) with shared weights: the `reinforce` controller trained on subnets of
the space's supernet before any candidate is trained alone.

Its gradient work runs in a Ray worker (`_enas_torch.search`): epochs that alternate training
the supernet's weights on the controller's samples (each sample's path, its weights compressed
as its policy says where the technique is elastic) with REINFORCE steps on the samples'
validation accuracy on those shared weights, its reward carrying the budgets in MnasNet's form
(the candidate's costs measured as the job measures them). The candidates it rewarded most are
asked first; then the trained controller goes on proposing, and learning from, candidates the
job's evaluator trains.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from cosearch.core.errors import SpecError
from cosearch.core.objectives import Goals
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, OneShotStrategy, Work
from cosearch.strategies.reinforce import ReinforceController

KEY = "enas:shared-weights"


@STRATEGIES.register("enas")
class EnasSearch(OneShotStrategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        epochs: Annotated[int, Field(ge=1)] = 5,
        samples: Annotated[int, Field(ge=1)] = 10,
        top_k: Annotated[int, Field(ge=1)] = 4,
        learning_rate: Annotated[float, Field(gt=0)] = 0.2,
        baseline_decay: Annotated[float, Field(ge=0, lt=1)] = 0.9,
        entropy_weight: Annotated[float, Field(ge=0)] = 0.01,
        alpha: float = 0.0,
        beta: float = -1.0,
    ) -> None:
        super().__init__(space, goals, seed)
        if space.space.registry_name and not space.space.has_supernet():
            raise SpecError("strategy", "enas", "a search space with a supernet (nb201, darts, enas)")
        self.controller_params = {
            "learning_rate": learning_rate,
            "baseline_decay": baseline_decay,
            "entropy_weight": entropy_weight,
            "alpha": alpha,
            "beta": beta,
        }
        self.then = ReinforceController(space, goals, seed, **self.controller_params)
        self.settings = {"epochs": epochs, "samples": samples, "top_k": top_k, "seed": seed}
        self.searched = False

    def work(self) -> list[Work]:
        if self.searched:
            return []
        args = {
            **self.settings,
            "controller": self.controller_params,
            "options": {name: list(values) for name, values in self.space.options.items()},
            "objectives": [o.metric for o in self.goals.objectives],
            "budgets": [str(c) for c in self.goals.constraints],
        }
        return [Work(KEY, "cosearch.strategies._enas_torch:search", args, "ENAS on shared weights")]

    def worked(self, key: str, output: Any) -> None:
        self.then.load_state_dict(output["controller"])
        self.to_ask = [dict(g) for g in output["best"]]
        self.searched = True

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "searched": self.searched}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.searched = state["searched"]
