"""`cosearch` command line: run, resume, status, pareto, report, export."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from rich.console import Console
from rich.table import Table

from cosearch.core.errors import CosearchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cosearch",
        description="Joint architecture x compression search on Ray, scored under device budgets.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="start a search from a job file")
    run.add_argument("job", help="job file (YAML), e.g. examples/digits.yaml")
    run.add_argument("--run-dir", help="where results go (default: runs/NAME-TIMESTAMP)")
    run.add_argument("--address", help="Ray cluster address, e.g. ray://head:10001 (default: local Ray)")

    resume = sub.add_parser("resume", help="continue a stopped or killed search")
    resume.add_argument("run_dir")
    resume.add_argument("--address", help="Ray cluster address (default: the job's, else local Ray)")

    status = sub.add_parser("status", help="progress, best so far and failures of a run")
    status.add_argument("run_dir")

    pareto = sub.add_parser("pareto", help="the Pareto set under the job's budgets")
    pareto.add_argument("run_dir")
    pareto.add_argument("--all", action="store_true", help="every result, failed and infeasible ones too")

    report = sub.add_parser("report", help="one self-contained HTML page with plots and the Pareto table")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output file (default: RUN_DIR/report.html)")

    export = sub.add_parser("export", help="write model.onnx and card.json for one result")
    export.add_argument("run_dir")
    export.add_argument("--pick", type=int, required=True, metavar="ID", help="result id, as `cosearch pareto` lists it")
    export.add_argument("--out", help="output folder (default: RUN_DIR/export-ID)")
    export.add_argument(
        "--float-weights", action="store_true",
        help="store every weight as float32 (larger file, full speed with default ONNX Runtime options)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except CosearchError as error:
        err_console.print(f"[red]error:[/red] {error}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        run_dir = getattr(args, "_run_dir", None) or getattr(args, "run_dir", None)
        err_console.print(f"stopped. Nothing done is lost; continue with: cosearch resume {run_dir}")
        return EXIT_INTERRUPTED


def _cmd_run(args: argparse.Namespace) -> int:
    from cosearch.job import load_job

    job = load_job(args.job)  # validated before anything is written
    run_dir = Path(args.run_dir or f"runs/{job.name}-{time.strftime('%Y%m%d-%H%M%S')}")
    args._run_dir = run_dir
    from cosearch.controller import Controller

    if (run_dir / "cosearch.db").exists():
        raise CosearchError(f"{run_dir} already holds a run; continue it with `cosearch resume {run_dir}`")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise CosearchError(f"{run_dir} exists and is not empty; give a new --run-dir")
    console.print(f"run directory: {run_dir}")
    return _drive(lambda listener: Controller.start(job, run_dir, address=args.address, listener=listener), run_dir)


def _cmd_resume(args: argparse.Namespace) -> int:
    from cosearch.controller import Controller

    run_dir = Path(args.run_dir)
    return _drive(lambda listener: Controller.resume(run_dir, address=args.address, listener=listener), run_dir)


def _drive(make, run_dir: Path) -> int:
    from cosearch.cli.progress import SearchProgress

    with SearchProgress(console) as progress:
        controller = make(progress)
        if controller.state.evaluated >= controller.state.total:
            console.print("this run is already complete")
        state = controller.run()
    _print_pareto(run_dir, show_all=False)
    if not state.finished:
        console.print(f"stopped before {state.total} results; continue with: cosearch resume {run_dir}")
    from cosearch.report.html import write_report

    console.print(f"report: {write_report(run_dir)}")
    console.print(f"run directory: {run_dir}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from cosearch.cli.progress import summary_line
    from cosearch.controller import RunState, RunStore
    from cosearch.job import spec_from_dict

    with RunStore(args.run_dir) as store:
        job = spec_from_dict(store.job(), args.run_dir)
        results = store.results()
        status = store.status()
    state = RunState(job.goals(), job.resources.trials, results=results, started_s=time.time())
    console.print(f"{args.run_dir}: {status['state']}")
    console.print(summary_line(state).split("  elapsed")[0])
    for item in results:
        if item.result.status == "failed":
            console.print(f"  failed #{item.id}: {item.result.error}", style="red")
    return 0


def _cmd_pareto(args: argparse.Namespace) -> int:
    _print_pareto(Path(args.run_dir), show_all=args.all)
    return 0


def _print_pareto(run_dir: Path, show_all: bool) -> None:
    from cosearch.controller import RunStore
    from cosearch.job import spec_from_dict
    from cosearch.report import pareto_ids, rows

    with RunStore(run_dir) as store:
        job = spec_from_dict(store.job(), str(run_dir))
        results = store.results()
    goals = job.goals()
    space = job.make_space()
    front = pareto_ids(results, goals)
    chosen = results if show_all else [r for i in front for r in results if r.id == i]
    budgets = ", ".join(map(str, goals.constraints)) or "none"
    title = f"{'All results' if show_all else 'Pareto set'} of {run_dir} (budgets: {budgets})"
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right")
    if show_all:
        table.add_column("status")
        table.add_column("pareto")
    metrics = [o.metric for o in goals.objectives] + [c.metric for c in goals.constraints if c.metric not in {o.metric for o in goals.objectives}]
    for metric in metrics:
        table.add_column(metric.replace("@", "\n@"), justify="right")
    table.add_column("compression")
    table.add_column("arch")
    if show_all:
        table.add_column("error")
    for row in rows(chosen, goals, space.describe):
        cells = [str(row.id)]
        if show_all:
            cells += [row.status if row.status != "ok" or row.feasible else "over budget", "*" if row.id in front else ""]
        for metric in metrics:
            value = row.metrics.get(metric)
            cells.append("-" if value is None else (f"{value:.2%}" if metric == "accuracy" else f"{value:.4g}"))
        cells += [row.policy, row.arch]
        if show_all:
            cells.append(row.error or "")
        table.add_row(*cells)
    console.print(table)
    if not front:
        console.print("no result meets every budget yet" if results else "no results yet")


def _cmd_report(args: argparse.Namespace) -> int:
    from cosearch.report.html import write_report

    console.print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from cosearch.export import export

    out = Path(args.out or Path(args.run_dir) / f"export-{args.pick}")
    card = export(args.run_dir, args.pick, out, int8_weights=not args.float_weights)
    info = card["export"]
    console.print(f"wrote {out / 'model.onnx'} ({info['file_bytes'] / 1024:.1f} KiB) and {out / 'card.json'}")
    console.print(
        f"ONNX Runtime: val accuracy {info['onnx_accuracy']['val']:.2%}, test accuracy {info['onnx_accuracy']['test']:.2%}, "
        f"latency {info['latency_ms']['median_ms']:.4f} ms median (batch {info['latency_ms']['batch_size']}, "
        f"{info['latency_ms']['threads']} thread, {info['latency_ms']['runs']} runs); "
        f"max |logit diff| vs PyTorch {info['max_abs_logit_diff_vs_pytorch']:.1e}"
    )
    if info["latency_ms_with_dequantize_folded"]:
        console.print(
            f"with ONNX Runtime session config {info['recommended_session_config']} the int8 weights are folded on load: "
            f"{info['latency_ms_with_dequantize_folded']['median_ms']:.4f} ms median"
        )
    return 0


COMMANDS = {
    "run": _cmd_run,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "pareto": _cmd_pareto,
    "report": _cmd_report,
    "export": _cmd_export,
}

if __name__ == "__main__":
    sys.exit(main())
