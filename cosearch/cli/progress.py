"""The one progress display for searches: a live panel on a terminal, a line per result elsewhere
(several results to a line when they come more than ten a second)."""

from __future__ import annotations

import math
import time

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.text import Text

from cosearch.controller.controller import RunState, format_duration

# The display is redrawn (live) or a line written (plain) at most this often; results that come
# faster are counted into the next update, so a run of cheap evaluations is not slowed by it.
MIN_INTERVAL_S = 0.1


def _fmt(metric: str, value: float) -> str:
    if metric == "accuracy":
        return f"{value:.2%}"
    return f"{value:.3g}"


def summary_line(state: RunState) -> str:
    best = ", ".join(f"{m} {_fmt(m, v)}" for m, v in state.best().items()) or "-"
    if state.note:
        return f"{state.note}...  elapsed {format_duration(state.elapsed_s)}"
    return (
        f"evaluated {state.evaluated}/{state.total}  running {state.running}  feasible {state.feasible}  "
        f"failed {state.failed}  over budget, not trained {state.skipped}  best: {best}  elapsed {format_duration(state.elapsed_s)}  "
        f"ETA {format_duration(state.eta_s)}"
    )


def savings_line(state: RunState) -> str:
    """How many trainings the budget checks before training saved, and about how long."""
    saved = state.training_saved_s()
    return (
        f"trainings saved: {state.skipped} candidates over budget were never trained "
        f"({state.skipped_by('predicted')} by predicted costs, {state.skipped_by('measured')} by measured latency)"
        + (f", about {saved:.0f} s of training at the trained candidates' mean" if saved is not None else "")
    )


class SearchProgress:
    """Callable listener for the Controller; use as a context manager around `Controller.run`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.live_mode = console.is_terminal
        self.bar = Progress(TextColumn("[bold]search"), BarColumn(), MofNCompleteColumn(), console=console)
        self.task = self.bar.add_task("search", total=1)
        self.live = Live(console=console, refresh_per_second=4, transient=False) if self.live_mode else None
        self._printed: int | None = None  # results listed so far
        self._note = ""
        self._shown_s = -math.inf
        self._failed = 0  # failures counted in lines so far

    def __enter__(self) -> SearchProgress:
        if self.live:
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.__exit__(*exc)

    def __call__(self, state: RunState) -> None:
        now = time.monotonic()
        due = now - self._shown_s >= MIN_INTERVAL_S or not state.running or state.note != self._note
        if not due:  # results arrive faster than anyone reads: they are shown together
            return
        self._shown_s = now
        if self.live:
            self.bar.update(self.task, total=state.total, completed=state.evaluated)
            lines = [self.bar, Text(summary_line(state))]
            lines += [Text(f"  failed #{r.id}: {r.result.error}", style="red") for r in list(state.failures)[-2:]]
            self.live.update(Group(*lines))
            self._note = state.note
            return
        if state.note and state.note != self._note:
            self.console.print(f"{state.note}...", highlight=False, markup=False)
        self._note = state.note
        if self._printed is None:  # results stored before this display started are not listed again
            self._printed, self._failed = state.evaluated, state.failed
        new = state.evaluated - self._printed
        if new == 1:  # a line per result, as long as they come slowly enough to read
            item = state.recent[-1]
            note = f" FAILED: {item.result.error}" if item.result.status == "failed" else ""
            note = f" ({item.result.error})" if item.result.status == "infeasible" else note
            line = f"[{state.evaluated}/{state.total}] #{item.id} {item.result.status}{note} | {summary_line(state)}"
            self.console.print(line, highlight=False, soft_wrap=True, markup=False)
        elif new > 1:
            failed = state.failed - self._failed
            note = f", {failed} FAILED, the latest: {state.failures[-1].result.error}" if failed else ""
            line = f"[{state.evaluated}/{state.total}] {new} new results{note} | {summary_line(state)}"
            self.console.print(line, highlight=False, soft_wrap=True, markup=False)
        self._printed, self._failed = state.evaluated, state.failed
