"""The progress display and the run state behind it: figures kept as running counts (the same work
at the millionth result as at the first), a line per result while results come slowly, one line
per group when they come faster than anyone reads."""

from __future__ import annotations

import io
import time

from rich.console import Console

from cosearch.cli import progress
from cosearch.cli.progress import SearchProgress
from cosearch.controller.controller import RECENT_RESULTS, RunState
from cosearch.controller.store import StoredResult
from cosearch.core import Candidate, Constraint, Goals, Objective, Result

GOALS = Goals((Objective.parse("accuracy"), Objective.parse("size_kb")), (Constraint.parse("size_kb <= 10"),))


def result(i: int, status: str = "ok", accuracy: float = 0.5, size_kb: float = 5.0) -> StoredResult:
    candidate = Candidate({"x": i})
    if status == "failed":
        return StoredResult(i, Result.failed(candidate, f"boom {i}"), 0.0)
    metrics = {"accuracy": accuracy, "size_kb": size_kb}
    measured = {"over_budget_stage": "predicted"} if status == "infeasible" else {}
    timings = {"train_s": 2.0} if status == "ok" else {}
    return StoredResult(i, Result(candidate, status, metrics, None, timings, measured), 0.0)


def test_running_counts_match_a_recount_over_the_results():
    state = RunState(GOALS, total=50)
    items = [
        result(1, accuracy=0.9, size_kb=20.0),  # over budget after training: ok, not feasible
        result(2, "failed"),
        result(3, accuracy=0.7),
        result(4, "infeasible", size_kb=30.0),
        result(5, accuracy=0.8, size_kb=9.0),
    ]
    for item in items:
        state.add(item)
    assert (state.evaluated, state.failed, state.feasible, state.skipped) == (5, 1, 2, 1)
    assert state.skipped_by("predicted") == 1 and state.skipped_by("measured") == 0
    assert state.best() == {"accuracy": 0.8, "size_kb": 5.0}  # among feasible results only
    assert state.training_saved_s() == 2.0  # one skipped, at the trained ones' mean of 2 s
    assert [r.id for r in state.failures] == [2]
    only_over = RunState(GOALS, total=5)
    only_over.add(items[0])
    assert only_over.best() == {"accuracy": 0.9, "size_kb": 20.0}  # nothing feasible: all ok results


def test_the_state_holds_only_the_latest_results():
    state = RunState(GOALS, total=10 * RECENT_RESULTS)
    for i in range(1, 3 * RECENT_RESULTS + 1):
        state.add(result(i))
    assert state.evaluated == 3 * RECENT_RESULTS and len(state.recent) == RECENT_RESULTS
    assert state.recent[-1].id == 3 * RECENT_RESULTS


def display() -> tuple[SearchProgress, io.StringIO]:
    out = io.StringIO()
    return SearchProgress(Console(file=out, width=300)), out


def test_slow_results_get_a_line_each(monkeypatch):
    monkeypatch.setattr(progress, "MIN_INTERVAL_S", 0.0)
    show, out = display()
    state = RunState(GOALS, total=3, running=1)
    show(state)
    for i in (1, 2):
        state.add(result(i, "failed" if i == 2 else "ok"))
        show(state)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/3] #1 ok |") and lines[1].startswith("[2/3] #2 failed FAILED: boom 2 |")


def test_fast_results_are_grouped_and_their_failures_named():
    show, out = display()
    state = RunState(GOALS, total=100, running=2)
    show(state)
    for i in range(1, 51):
        state.add(result(i, "failed" if i == 30 else "ok"))
        show(state)  # 50 results well inside one interval: one line at most
    time.sleep(progress.MIN_INTERVAL_S)
    state.add(result(51))
    show(state)
    lines = out.getvalue().splitlines()
    assert len(lines) <= 3, lines
    assert any("new results, 1 FAILED, the latest: boom 30" in line for line in lines)
    state.running = 0
    state.add(result(52))
    show(state)  # the end is always shown
    assert out.getvalue().splitlines()[-1].startswith("[52/100]")
