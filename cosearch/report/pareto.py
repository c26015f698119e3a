"""The Pareto set of a run under its budgets, as rows people can read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from cosearch.controller.store import StoredResult
from cosearch.core.objectives import Goals
from cosearch.core.pareto import pareto_front


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    feasible: bool
    metrics: dict[str, float]
    arch: str
    policy: str
    error: str | None


def pareto_ids(results: Sequence[StoredResult], goals: Goals) -> list[int]:
    """Ids of the feasible, non-dominated results, best first by the first objective."""
    ok = [r for r in results if r.result.ok]
    if not ok:
        return []
    values, violations = goals.arrays([r.result for r in ok])
    front = [ok[i] for i in pareto_front(values, violations)]
    first = goals.objectives[0]
    sign = -1.0 if first.direction == "max" else 1.0
    front.sort(key=lambda r: (sign * r.result.metrics.get(first.metric, float("inf")), r.id))
    return [r.id for r in front]


def rows(results: Sequence[StoredResult], goals: Goals, describe) -> list[Row]:
    return [
        Row(
            id=r.id,
            status=r.result.status,
            feasible=goals.feasible(r.result),
            metrics=dict(r.result.metrics),
            arch=describe(r.result.candidate.arch),
            policy=r.result.candidate.policy.summary(),
            error=r.result.error,
        )
        for r in results
    ]
