"""The Pareto set of a run under its budgets, as rows people can read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosearch.controller.store import RunStore, StoredOutcome, StoredResult, is_final
from cosearch.core.candidate import Candidate
from cosearch.core.errors import CosearchError, SpecError
from cosearch.core.objectives import METRIC_DIRECTIONS, Constraint, Goals, Objective, base_metric, resolve_metric
from cosearch.core.pareto import pareto_front


@dataclass(frozen=True)
class Row:
    """One stored result as people read it (`cosearch pareto`, `open_run(...).results()`)."""

    id: int
    status: str
    feasible: bool
    metrics: dict[str, float]
    arch: str
    policy: str
    error: str | None
    searched_accuracy: float | None = None  # a final training: the accuracy the search measured for it
    pareto: bool = False  # on the feasible front of the goals it was read under
    final: bool = False  # a final, standalone training of one of the search's picks (job.finalize)
    candidate: Candidate | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values: the candidate as its stored form, with its key."""
        names = ("id", "status", "feasible", "pareto", "final", "metrics", "policy", "arch", "error")
        out = {k: getattr(self, k) for k in names}
        out["searched_accuracy"] = self.searched_accuracy
        if self.candidate is not None:
            out["key"] = self.candidate.key
            out["candidate"] = self.candidate.to_json()
        return out


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


def ranked_ids(results: Sequence[StoredOutcome | StoredResult], goals: Goals, count: int) -> list[int]:
    """Ids of up to `count` feasible results by Pareto rank: the non-dominated ones, then those
    non-dominated once they are set aside, and so on; each front best first by the first objective.
    (A weight-sharing search picks its finals so: the front of inherited accuracies is noisy, and its
    neighbours may be on the standalone front.)"""
    remaining, ranked = list(results), []
    while len(ranked) < count:
        front = pareto_ids(remaining, goals)
        if not front:
            break
        ranked += front
        taken = set(front)
        remaining = [r for r in remaining if r.id not in taken]
    return ranked[:count]


def view_goals(
    goals: Goals,
    metrics_seen: set[str],
    device: str | None = None,
    budgets: Sequence[Constraint] = (),
    field: str = "--budget",
) -> Goals:
    """The goals seen for one device, with some budgets replaced.

    With `device`, objectives and budgets on other devices are left out and the device's
    latency becomes an objective; each of `budgets` replaces the job's on the same metric.
    """

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
            raise SpecError(field, str(budget), f"a budget on a metric this run has: {sorted(metrics_seen)}")
        constraints = [c for c in constraints if (c.metric, c.op) != (budget.metric, budget.op)] + [budget]
    return Goals(tuple(objectives), tuple(constraints))


def rows(results: Sequence[StoredResult], goals: Goals, describe, front: Sequence[int] = ()) -> list[Row]:
    on_front = set(front)
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
            pareto=r.id in on_front,
            final=is_final(r.result),
            candidate=r.result.candidate,
        )
        for r in results
    ]


@dataclass(frozen=True)
class Selection:
    """What `cosearch pareto` shows: the goals it was read under, the front, and the rows."""

    run_dir: Path
    goals: Goals
    front: list[int]  # ids, best first by the first objective
    rows: list[Row]  # the front's, or every result's with `every`
    finals: bool  # the front is of the final trainings of the search's picks
    any_results: bool

    @property
    def columns(self) -> list[str]:
        """The objectives, then the budgets' metrics that are no objective."""
        objectives = [o.metric for o in self.goals.objectives]
        return objectives + [c.metric for c in self.goals.constraints if c.metric not in objectives]


def _budgets(texts: Sequence[str | Constraint], field: str) -> list[Constraint]:
    return [t if isinstance(t, Constraint) else Constraint.parse(t, f"{field}[{i}]") for i, t in enumerate(texts)]


def _read(store: RunStore, run_dir, device, budgets, field):
    """The run's job, every outcome (metrics only: candidates are read for rows), the goals
    under `device` and `budgets`, and the picking set."""
    from cosearch.job import spec_from_dict

    job = spec_from_dict(store.job(), str(run_dir))
    outcomes = store.outcomes()
    seen = {m for r in outcomes for m in r.result.metrics}
    goals = view_goals(job.goals(), seen, device, _budgets(budgets, field), field)
    return job, outcomes, goals, picking_set(outcomes)


def select(
    run_dir: str | Path,
    every: bool = False,
    device: str | None = None,
    budgets: Sequence[str | Constraint] = (),
    field: str = "--budget",
) -> Selection:
    """The feasible front of a run for one device and budgets (each replacing the job's budget on
    the same metric), with its rows; with `every`, every stored result's row."""
    from cosearch.build import make_space

    with RunStore(run_dir) as store:
        job, outcomes, goals, picking = _read(store, run_dir, device, budgets, field)
        front = pareto_ids(picking, goals)
        chosen = store.results() if every else [store.get(i) for i in front]
    space = make_space(job)
    return Selection(
        Path(run_dir),
        goals,
        front,
        rows(chosen, goals, space.describe, front),
        len(picking) < len(outcomes),
        bool(outcomes),
    )


def best(run_dir: str | Path, metric: str, where: Sequence[str | Constraint] = ()) -> tuple[Row, str]:
    """The best result by `metric` among those meeting the rules `where` and the job's other budgets
    (a rule replaces the job's budget on its metric); with a sentence saying which and why. Only
    the pick's candidate is read from the store."""
    from cosearch.build import make_space

    metric = resolve_metric(metric, "--best")
    with RunStore(run_dir) as store:
        job, outcomes, goals, picking = _read(store, run_dir, None, where, "--where")
        finals = len(picking) < len(outcomes)
        pool = [r for r in picking if r.result.ok]  # the final trainings when there are any
        if not any(metric in r.result.metrics for r in pool):
            seen = sorted({m for r in outcomes for m in r.result.metrics})
            raise SpecError("--best", metric, f"a metric this run's results have: {seen}")
        rules = ", ".join(map(str, goals.constraints)) or "no budgets"
        of = " final trainings" if finals else " trained results"
        meeting = [r for r in pool if goals.feasible(r.result) and metric in r.result.metrics]
        if not meeting:
            each = "; ".join(
                f"{c}: {sum(c.metric in r.result.metrics and c.violation(r.result.metrics[c.metric]) == 0 for r in pool)}"
                for c in goals.constraints
            )
            raise CosearchError(
                f"no result meets {rules} (of {len(pool)}{of}, how many meet each: {each}); "
                f"loosen a rule (`cosearch pareto {run_dir} --all` lists what they reach)"
            )
        direction = METRIC_DIRECTIONS[base_metric(metric)]
        sign = -1.0 if direction == "max" else 1.0
        pick = min(meeting, key=lambda r: (sign * r.result.metrics[metric], r.id))
        stored = store.get(pick.id)
    (row,) = rows([stored], goals, make_space(job).describe, pareto_ids(picking, goals))
    value = row.metrics[metric]
    shown = f"{value:.2%}" if base_metric(metric) == "accuracy" else f"{value:.4g}"
    word = "highest" if direction == "max" else "lowest"
    why = f"picked #{row.id}: the {word} {metric} ({shown}) of the {len(meeting)} of {len(pool)}{of} that meet {rules}"
    return row, why
