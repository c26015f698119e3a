"""cosearch from Python, for notebooks: open a run, read its results and Pareto set, pick, export,
and start a search.

    import cosearch
    run = cosearch.search("examples/digits.yaml", run_dir="runs/digits")
    for row in run.pareto(device="local-cpu", budgets=["size_kb <= 50"]):
        print(row.id, row.metrics["accuracy"], row.policy)
    run.export(run.best("accuracy", where=["latency_ms <= 0.05"]).id, "exported/")

Records are `Row`s (typed; `row.to_dict()` gives plain values); nothing here needs pandas.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cosearch.core.errors import CosearchError
from cosearch.core.objectives import Constraint
from cosearch.report.pareto import Row


class Run:
    """A stored run, read where it lies (a driver may still be adding to it)."""

    def __init__(self, run_dir: str | Path) -> None:
        from cosearch.controller.store import is_run_dir

        self.run_dir = Path(run_dir)
        if not is_run_dir(self.run_dir):
            raise CosearchError(f"{self.run_dir} holds no cosearch run (no cosearch.db)")

    def __repr__(self) -> str:
        return f"Run({str(self.run_dir)!r})"

    def status(self) -> dict[str, Any]:
        """The stored state ('running', 'finished', ...), its reason, and the result counts."""
        from cosearch.controller.store import RunStore, is_final

        with RunStore(self.run_dir) as store:
            state = dict(store.status())
            outcomes = store.outcomes()
            trials = store.job().get("resources", {}).get("trials")
        searched = [r for r in outcomes if not is_final(r.result)]
        counts = {s: sum(r.result.status == s for r in searched) for s in ("ok", "infeasible", "failed")}
        return {
            **state,
            "evaluated": len(searched),
            "trials": trials,
            **counts,
            "finals": len(outcomes) - len(searched),
        }

    def results(self) -> list[Row]:
        """Every stored result, in the order they were stored, under the job's budgets."""
        from cosearch.report.pareto import select

        return select(self.run_dir, every=True).rows

    def pareto(self, device: str | None = None, budgets: Sequence[str | Constraint] = ()) -> list[Row]:
        """The feasible front, best first by the first objective; as `cosearch pareto --device --budget`."""
        from cosearch.report.pareto import select

        return select(self.run_dir, device=device, budgets=budgets).rows

    def best(self, metric: str, where: Sequence[str | Constraint] = ()) -> Row:
        """The best result by `metric` meeting every rule in `where` and the job's other budgets;
        as `cosearch export --best METRIC --where RULE`."""
        from cosearch.report.pareto import best

        return best(self.run_dir, metric, where)[0]

    def export(self, result_id: int, out_dir: str | Path | None = None, finetune_epochs: int = 0) -> dict[str, Any]:
        """Write model.onnx and card.json of one result (default: RUN_DIR/export-ID); returns the
        card. `finetune_epochs`: as `cosearch export --finetune`."""
        from cosearch.export import export

        out = out_dir or self.run_dir / f"export-{result_id}"
        return export(self.run_dir, result_id, out, finetune_epochs=finetune_epochs)

    def report(self, out: str | Path | None = None) -> Path:
        """Write the interactive HTML report (default: RUN_DIR/report.html); returns its path."""
        from cosearch.report.html import write_report

        return write_report(self.run_dir, out)


def open_run(run_dir: str | Path) -> Run:
    return Run(run_dir)


def search(
    job: str | Path | Mapping[str, Any] | Any,
    run_dir: str | Path | None = None,
    address: str | None = None,
    teacher: Any = None,
    progress: bool = True,
    warm_start: str | Path | None = None,
) -> Run:
    """Run a search to its end and return it. `job`: a job file, a mapping as a job file reads, or a
    `JobSpec`; `address`: a Ray cluster (default: local Ray); `teacher`: a trained module to distil
    from; `progress`: the progress display `cosearch run` shows; `warm_start`: an earlier run of the
    same space to begin from (as `cosearch run --warm-start`). Ctrl-C stops it resumably
    (`cosearch resume RUN_DIR`, or `resume(RUN_DIR)`)."""
    from cosearch.build import load_job
    from cosearch.controller import Controller, check_new_run_dir, default_run_dir
    from cosearch.job import JobSpec, spec_from_dict

    if isinstance(job, (str, Path)):
        spec = load_job(job)
    elif isinstance(job, Mapping):
        spec = spec_from_dict(dict(job))
    elif isinstance(job, JobSpec):
        spec = job
    else:
        raise CosearchError(f"job: a job file, a mapping or a JobSpec, not {type(job).__name__}")
    run_dir = Path(run_dir or default_run_dir(spec))
    check_new_run_dir(run_dir)
    _drive(
        lambda listener: Controller.start(
            spec, run_dir, address=address, teacher=teacher, warm_start=warm_start, listener=listener
        ),
        progress,
    )
    return Run(run_dir)


def resume(run_dir: str | Path, address: str | None = None, progress: bool = True, trials: int | None = None) -> Run:
    """Continue a stopped or killed search to its end; `trials`: to that many results in all (a
    finished run goes on, as `cosearch resume --trials`)."""
    from cosearch.controller import Controller

    _drive(lambda listener: Controller.resume(run_dir, address=address, trials=trials, listener=listener), progress)
    return Run(run_dir)


def _drive(make, progress: bool) -> None:
    if not progress:
        make(None).run()
        return
    from rich.console import Console

    from cosearch.cli.progress import SearchProgress

    with SearchProgress(Console(highlight=False, markup=False)) as display:
        make(display).run()
