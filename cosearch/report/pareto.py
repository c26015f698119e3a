"""The Pareto set of a run under its budgets, as rows people can read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cosearch.controller.store import StoredOutcome, StoredResult, is_final
from cosearch.core.objectives import Constraint, Goals, Objective
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
    searched_accuracy: float | None = None  # a final training: the accuracy the search measured for it


def picking_set(results: Sequence[StoredOutcome | StoredResult]) -> list:
    """What a user picks from: the final, standalone trainings of a search's picks
    (`job.finalize`) once there are any, else the search's own results."""
    finals = [r for r in results if is_final(r.result)]
    return finals or list(results)


def searched(results: Sequence[StoredOutcome | StoredResult]) -> list:
    """The search's own evaluations, without the final trainings of its picks."""
    return [r for r in results if not is_final(r.result)]


def pareto_ids(results: Sequence[StoredOutcome | StoredResult], goals: Goals) -> list[int]:
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


def view_goals(
    goals: Goals, metrics_seen: set[str], device: str | None = None, budgets: Sequence[Constraint] = ()
) -> Goals:
    """The goals seen for one device, with some budgets replaced.

    With `device`, objectives and budgets on other devices are left out and the device's
    latency becomes an objective; each of `budgets` replaces the job's on the same metric.
    """
    from cosearch.core.errors import SpecError

    def keep(metric: str) -> bool:
        return device is None or "@" not in metric or metric.partition("@")[2] == device

    objectives = [o for o in goals.objectives if keep(o.metric)]
    if device is not None:
        if not any(m.partition("@")[2] == device for m in metrics_seen):
            devices = sorted({m.partition("@")[2] for m in metrics_seen if "@" in m})
            raise SpecError("--device", device, f"a device this run has metrics for: {devices}")
        if f"latency_ms@{device}" not in {o.metric for o in objectives}:
            objectives.append(Objective.parse(f"latency_ms@{device}"))
    constraints = [c for c in goals.constraints if keep(c.metric)]
    for budget in budgets:
        if budget.metric not in metrics_seen:
            raise SpecError("--budget", str(budget), f"a budget on a metric this run has: {sorted(metrics_seen)}")
        constraints = [c for c in constraints if (c.metric, c.op) != (budget.metric, budget.op)] + [budget]
    return Goals(tuple(objectives), tuple(constraints))


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
            searched_accuracy=r.result.measured.get("final", {}).get("searched_accuracy"),
        )
        for r in results
    ]
