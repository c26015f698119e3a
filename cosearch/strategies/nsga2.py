"""Multi-objective evolution in the NSGA-II style (Deb et al. 2002), asynchronous (steady state).

Each ask breeds one child: two binary tournaments over the current elite pick the parents by
constrained non-dominated rank, then crowding distance; uniform crossover and mutation follow.
The elite is the best `population_size` of everything told so far, ranked the same way.
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
        self.seen: set[str] = set()
        # Everything told: (genome, minimisation vector, violation).
        self.archive: list[tuple[dict[str, Any], list[float], float]] = []
        self._elite: tuple[int, list[int], np.ndarray, np.ndarray] | None = None  # cache per archive size

    def _ranked_elite(self) -> tuple[list[int], np.ndarray, np.ndarray]:
        """Archive indices of the elite with each one's rank and crowding distance."""
        if self._elite is not None and self._elite[0] == len(self.archive):
            return self._elite[1], self._elite[2], self._elite[3]
        values = np.array([a[1] for a in self.archive], dtype=float)
        violations = np.array([a[2] for a in self.archive], dtype=float)
        elite: list[int] = []
        ranks: list[int] = []
        crowding: list[float] = []
        for rank, front in enumerate(nondominated_sort(values, violations)):
            finite = np.where(np.isfinite(values[front]), values[front], 1e300)
            distance = crowding_distance(finite) if len(front) > 1 else np.array([np.inf])
            order = np.argsort(-distance, kind="stable")
            for k in order:
                if len(elite) == self.population_size:
                    break
                elite.append(front[k])
                ranks.append(rank)
                crowding.append(float(distance[k]))
            if len(elite) == self.population_size:
                break
        self._elite = (len(self.archive), elite, np.array(ranks), np.array(crowding))
        return elite, np.array(ranks), np.array(crowding)

    def _tournament(self, elite: list[int], ranks: np.ndarray, crowding: np.ndarray) -> dict[str, Any]:
        i, j = self.rng.choice(len(elite), size=2, replace=len(elite) < 2)
        better = i if (ranks[i], -crowding[i]) <= (ranks[j], -crowding[j]) else j
        return self.archive[elite[better]][0]

    def _breed(self) -> Candidate:
        elite, ranks, crowding = self._ranked_elite()
        mother = self._tournament(elite, ranks, crowding)
        father = self._tournament(elite, ranks, crowding)
        child = (
            self.space.crossover(mother, father, self.rng) if self.rng.random() < self.crossover_prob else dict(mother)
        )
        for _ in range(self.mutation_count):
            child = self.space.mutate(child, self.rng)
        return self.space.decode(child)

    def ask(self) -> Candidate:
        self.asked += 1
        warmup = self.asked <= self.population_size or len(self.archive) < 2
        random = lambda: self.space.decode(self.space.sample(self.rng))  # noqa: E731
        candidate = self.first_new(random if warmup else self._breed, self.seen, MAX_TRIES)
        self.seen.add(candidate.key)
        return candidate

    def tell(self, candidate: Candidate, result: Result) -> None:
        self.seen.add(candidate.key)
        vector = self.goals.minimization_vector(result)
        self.archive.append((self.space.encode(candidate), vector.tolist(), self.goals.violation(result)))

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "asked": self.asked,
            "seen": sorted(self.seen),
            "archive": [list(a) for a in self.archive],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.asked = state["asked"]
        self.seen = set(state["seen"])
        self.archive = [(dict(g), list(v), float(w)) for g, v, w in state["archive"]]
        self._elite = None
