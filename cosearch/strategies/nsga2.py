"""Multi-objective evolution in the NSGA-II style (Deb et al. 2002), asynchronous (steady state).

Each ask breeds one child: two binary tournaments over the population pick the parents by
constrained non-dominated rank, then crowding distance; uniform crossover and mutation follow.
Each told result joins the population and the worst member, ranked the same way, leaves it
((mu + 1) selection), so the cost of a step does not grow with the run.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from pydantic import Field

from cosearch.core.candidate import Candidate
from cosearch.core.objectives import Goals
from cosearch.core.pareto import crowding_distance, nondominated_sort
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace
from cosearch.strategies.base import STRATEGIES, Strategy

MAX_TRIES = 50  # children that repeat a known candidate are bred again, at most this often


@STRATEGIES.register("nsga2")
class NSGA2(Strategy):
    def __init__(
        self,
        space: JointSpace,
        goals: Goals,
        seed: int = 0,
        population_size: Annotated[int, Field(ge=4)] = 20,
        crossover_prob: Annotated[float, Field(ge=0, le=1)] = 0.9,
        mutation_count: Annotated[int, Field(ge=0)] = 1,
    ) -> None:
        super().__init__(space, goals, seed)
        self.population_size = population_size
        self.crossover_prob = crossover_prob
        self.mutation_count = mutation_count
        self.asked = 0
        # The elite, at most `population_size`: (genome, minimisation vector, violation). Each
        # tell adds one and drops the worst (steady-state NSGA-II), so an ask costs the same at the
        # 100,000th evaluation as at the 100th.
        self.population: list[tuple[dict[str, Any], list[float], float]] = []
        self._ranked: tuple[np.ndarray, np.ndarray] | None = None  # ranks and crowding of the population

    def _select(self, entries: list[tuple[dict[str, Any], list[float], float]]) -> list[int]:
        """Indices of the best `population_size` of `entries`, best first: by constrained
        non-dominated rank, then crowding distance, ties by order."""
        values = np.array([e[1] for e in entries], dtype=float).reshape(len(entries), -1)
        violations = np.array([e[2] for e in entries], dtype=float)
        chosen: list[int] = []
        for front in nondominated_sort(values, violations):
            order = np.argsort(-_crowding(values[front]), kind="stable")
            chosen += [front[k] for k in order[: self.population_size - len(chosen)]]
            if len(chosen) == self.population_size:
                break
        return chosen

    def _ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Each population member's constrained non-dominated rank and crowding distance."""
        if self._ranked is None:
            values = np.array([p[1] for p in self.population], dtype=float).reshape(len(self.population), -1)
            violations = np.array([p[2] for p in self.population], dtype=float)
            ranks, crowding = np.zeros(len(values), int), np.zeros(len(values))
            for rank, front in enumerate(nondominated_sort(values, violations)):
                ranks[front], crowding[front] = rank, _crowding(values[front])
            self._ranked = ranks, crowding
        return self._ranked

    def _tournament(self, ranks: np.ndarray, crowding: np.ndarray) -> dict[str, Any]:
        i, j = self.rng.choice(len(ranks), size=2, replace=len(ranks) < 2)
        better = i if (ranks[i], -crowding[i]) <= (ranks[j], -crowding[j]) else j
        return self.population[better][0]

    def _breed(self) -> Candidate:
        ranks, crowding = self._ranks()
        mother = self._tournament(ranks, crowding)
        father = self._tournament(ranks, crowding)
        child = (
            self.space.crossover(mother, father, self.rng) if self.rng.random() < self.crossover_prob else dict(mother)
        )
        for _ in range(self.mutation_count):
            child = self.space.mutate(child, self.rng)
        return self.space.decode(child)

    def ask(self) -> Candidate:
        self.asked += 1
        warmup = self.asked <= self.population_size or len(self.population) < 2
        random = lambda: self.space.decode(self.space.sample(self.rng))  # noqa: E731
        return self.first_new(random if warmup else self._breed, MAX_TRIES)

    def tell(self, candidate: Candidate, result: Result) -> None:
        vector = self.goals.minimization_vector(result)
        self.population.append((self.space.encode(candidate), vector.tolist(), self.goals.violation(result)))
        if len(self.population) > self.population_size:
            self.population = [self.population[i] for i in sorted(self._select(self.population))]
        self._ranked = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "asked": self.asked, "population": [list(p) for p in self.population]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.asked = state["asked"]
        entries = [(dict(g), list(v), float(w)) for g, v, w in state.get("population", state.get("archive", []))]
        if len(entries) > self.population_size:  # a checkpoint of cosearch <= 0.x kept the whole archive
            entries = [entries[i] for i in sorted(self._select(entries))]
        self.population = entries
        self._ranked = None


def _crowding(values: np.ndarray) -> np.ndarray:
    """Crowding distance within one front (inf at its ends; a lone point is inf)."""
    if len(values) <= 1:
        return np.full(len(values), np.inf)
    return crowding_distance(np.where(np.isfinite(values), values, 1e300))
