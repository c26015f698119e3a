"""Regularized (aging) evolution, Real et al. 2019, over the joint genome.

Tournament winners are picked by constrained non-dominated rank, so with one objective this is
the paper's algorithm and with several it prefers feasible, Pareto-optimal parents.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from cosearch.core.candidate import Candidate
from cosearch.core.objectives import Goals
from cosearch.core.pareto import nondominated_sort
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, Strategy

MAX_MUTATION_TRIES = 50  # a mutation may hit a dead gene or a known candidate; breed again


@STRATEGIES.register("regularized_evolution")
class RegularizedEvolution(Strategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        population_size: Annotated[int, Field(ge=2)] = 20,
        sample_size: Annotated[int, Field(ge=1)] = 5,
    ) -> None:
        if not sample_size <= population_size:
            raise ValueError(f"`1 <= sample_size <= population_size` must hold, but got {sample_size=}")
        super().__init__(space, goals, seed)
        self.population_size = population_size
        self.sample_size = sample_size
        self.asked = 0
        # The most recent results, oldest first: (genome, minimisation vector, violation).
        self.population: list[tuple[dict[str, Any], list[float], float]] = []

    def ask(self) -> Candidate:
        self.asked += 1
        return self._propose()

    def _random_unseen(self) -> Candidate:
        return self.first_new(lambda: self.space.decode(self.space.sample(self.rng)), MAX_MUTATION_TRIES)

    def _propose(self) -> Candidate:
        if self.asked <= self.population_size or not self.population:
            return self._random_unseen()
        picks = self.rng.choice(len(self.population), size=min(self.sample_size, len(self.population)), replace=False)
        values = np.array([self.population[i][1] for i in picks])
        violations = np.array([self.population[i][2] for i in picks])
        best_front = nondominated_sort(values, violations)[0]
        parent_genome = self.population[int(picks[best_front[int(self.rng.integers(len(best_front)))]])][0]
        child = self.first_new(
            lambda: self.space.decode(self.space.mutate(parent_genome, self.rng)), MAX_MUTATION_TRIES
        )
        return child if child.key not in self.known else self._random_unseen()

    def tell(self, candidate: Candidate, result: Result) -> None:
        vector = self.goals.minimization_vector(result)
        self.population.append((self.space.encode(candidate), vector.tolist(), self.goals.violation(result)))
        if len(self.population) > self.population_size:
            self.population.pop(0)  # aging: the oldest dies, not the worst

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "asked": self.asked,
            "population": [list(p) for p in self.population],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.asked = state["asked"]
        self.population = [(dict(g), list(v), float(w)) for g, v, w in state["population"]]
