"""`cosearch` command line: run, resume, status, pareto, report, export, profile."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from cosearch.core.errors import CosearchError

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, as shells report it


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, `kill`, Ray's `job stop`): stopped like Ctrl-C, resumable."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


# Off a terminal (CI logs, pipes) rich would wrap at 80 columns; tables read better wider. No markup:
# paths and messages are printed as they are (a run directory named `runs/[test]` stays so).
console = Console(highlight=False, markup=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, highlight=False, markup=False, width=None if sys.stderr.isatty() else 160)


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
    run.add_argument(
        "--warm-start",
        metavar="RUN_DIR",
        help="an earlier run of the same search space: its results are told to the strategy first, and those "
        "evaluated with the same settings are reused instead of evaluated again",
    )

    resume = sub.add_parser("resume", help="continue a stopped or killed search")
    resume.add_argument("run_dir")
    resume.add_argument("--address", help="Ray cluster address (default: the job's, else local Ray)")
    resume.add_argument(
        "--trials",
        type=int,
        metavar="N",
        help="continue to N results in all (a finished run goes on, its strategy where it stopped); at least the stored count",
    )
    resume.add_argument(
        "--reset-strategy",
        action="store_true",
        help="when the stored strategy checkpoint cannot be loaded: start the strategy afresh and tell it every stored result",
    )

    status = sub.add_parser("status", help="progress, best so far and failures of a run")
    status.add_argument("run_dir")

    pareto = sub.add_parser("pareto", help="the Pareto set under the job's budgets")
    pareto.add_argument("run_dir")
    pareto.add_argument("--all", action="store_true", help="every result, failed and infeasible ones too")
    pareto.add_argument("--device", help="the set for one device: objectives and budgets on other devices are left out")
    pareto.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="BUDGET",
        help="a budget replacing the job's on the same metric, e.g. 'latency_ms@rpi4 <= 5' (repeatable)",
    )
    pareto.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (default), csv (one row per result, a column per metric) or json (a list of records with the full candidate)",
    )

    report = sub.add_parser("report", help="one self-contained HTML page with plots and the Pareto table")
    report.add_argument("run_dir")
    report.add_argument("--out", help="output file (default: RUN_DIR/report.html)")

    export = sub.add_parser(
        "export",
        help="write model.onnx and card.json for one result",
        description="Export one result: by id (--pick), or the best by one metric under rules (--best, --where).",
    )
    export.add_argument("run_dir")
    which = export.add_mutually_exclusive_group(required=True)
    which.add_argument("--pick", type=int, metavar="ID", help="result id, as `cosearch pareto` lists it")
    which.add_argument(
        "--best",
        metavar="METRIC",
        help="the best result by this metric (accuracy: highest; costs: lowest) that meets the job's budgets and every --where",
    )
    export.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="RULE",
        help="with --best: a rule such as 'latency_ms@rpi4 <= 10', replacing the job's budget on that metric (repeatable)",
    )
    export.add_argument(
        "--finetune",
        type=int,
        default=0,
        metavar="EPOCHS",
        help="train the pick this many epochs more, under its compression, on the training and validation images "
        "(with distillation when its policy distils) before it is written; the test split stays held out",
    )
    export.add_argument(
        "--portable",
        action="store_true",
        help="store 8-bit weights of integer layers as uint8 (exact on every CPU, slower) even where this CPU runs "
        "full-range int8 exactly (VNNI): for a target x86 CPU without VNNI",
    )
    export.add_argument("--out", help="output folder (default: RUN_DIR/export-ID)")

    profile = sub.add_parser(
        "profile",
        help="measure a per-layer latency table of a search space on this machine's device",
        description="Times every distinct layer configuration (ONNX Runtime node after its own fusions) of a space's "
        "networks on this machine, plus whole networks to fit the fixed overhead, and writes a table that "
        "`devices: {NAME: {kind: lut, table: FILE}}` predicts from. Run it on the machine that has the device.",
    )
    profile.add_argument("--out", required=True, help="table file to write (JSON)")
    profile.add_argument("--device", default="local-cpu", help="a measured device: local-cpu or one the --job declares")
    profile.add_argument("--space", help="search space (default: the job's, else nb201)")
    profile.add_argument(
        "--job", help="job file: its space and parameters, channel ratios, dataset input shape, devices"
    )
    profile.add_argument("--input-shape", help="C,H,W (default: the job's dataset, else digits 1,8,8)")
    profile.add_argument(
        "--max-networks", type=int, default=300, help="most networks drawn to find layer configurations"
    )
    profile.add_argument(
        "--patience", type=int, default=40, help="stop after this many networks in a row bring nothing new"
    )
    profile.add_argument(
        "--passes",
        type=int,
        default=3,
        help="time everything this many times over, keeping the lowest median (robust to a machine that slows down for a while)",
    )
    profile.add_argument(
        "--calibration",
        type=int,
        default=40,
        help="networks also measured whole, to fit the overhead and per-op scales",
    )
    profile.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return COMMANDS[args.command](args)
    except CosearchError as error:
        err_console.print(Text.assemble(("error: ", "red"), _capped(str(error))))
        return EXIT_USAGE
    except BrokenPipeError:  # `cosearch pareto RUN --format csv | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 0
    except KeyboardInterrupt as interrupt:
        run_dir = getattr(args, "_run_dir", None) or getattr(args, "run_dir", None)
        if args.command in ("run", "resume"):
            err_console.print(f"stopped. Nothing done is lost; continue with: cosearch resume {run_dir}")
        else:
            err_console.print("stopped")
        return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


MAX_MESSAGE_CHARS = 2000  # a message echoing a huge value is cut: the point is the field and the rule


def _capped(text: str) -> str:
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    return f"{text[: MAX_MESSAGE_CHARS // 2]} ... [{len(text) - MAX_MESSAGE_CHARS} characters left out] ... {text[-MAX_MESSAGE_CHARS // 2 :]}"


def _cmd_run(args: argparse.Namespace) -> int:
    from cosearch.build import load_job
    from cosearch.job import require_teacher

    job = load_job(args.job)  # validated before anything is written
    require_teacher(job)  # from the command line the teacher can only be named, not given as a module
    from cosearch.controller import Controller, check_new_run_dir, default_run_dir

    run_dir = Path(args.run_dir or default_run_dir(job))
    args._run_dir = run_dir
    note = check_new_run_dir(run_dir)
    if note:
        console.print(note)
    console.print(f"run directory: {run_dir}")

    def start(listener):
        controller = Controller.start(job, run_dir, address=args.address, warm_start=args.warm_start, listener=listener)
        if controller.warm is not None:
            console.print(controller.warm.describe())
        return controller

    return _drive(start, run_dir)


def _cmd_resume(args: argparse.Namespace) -> int:
    from cosearch.controller import Controller

    run_dir = Path(args.run_dir)
    return _drive(
        lambda listener: Controller.resume(
            run_dir, address=args.address, reset_strategy=args.reset_strategy, trials=args.trials, listener=listener
        ),
        run_dir,
    )


def _drive(make, run_dir: Path) -> int:
    from cosearch.cli.progress import SearchProgress, savings_line

    with SearchProgress(console) as progress:
        controller = make(progress)
        if controller.state.evaluated >= controller.state.total:
            console.print("this run is already complete")
        state = controller.run()
    _print_pareto(run_dir, show_all=False)
    if state.skipped:
        console.print(savings_line(state))
    if state.random_proposals:
        console.print(
            f"the strategy kept proposing stored candidates; {state.random_proposals} random candidates were evaluated in their place"
        )
    if state.reason:
        console.print(f"{'finished early' if state.finished else 'stopped'}: {state.reason}")
    if not state.finished:
        console.print(f"stopped before {state.total} results; continue with: cosearch resume {run_dir}")
    from cosearch.report.html import write_report

    console.print(f"report: {write_report(run_dir)}")
    console.print(f"run directory: {run_dir}")
    return 0


STATUS_FAILURES = 20  # the latest failures `status` lists with their errors


def _cmd_status(args: argparse.Namespace) -> int:
    from cosearch.cli.progress import savings_line, summary_line
    from cosearch.controller import RunState, RunStore
    from cosearch.controller.lock import driver_running
    from cosearch.controller.store import is_final
    from cosearch.job import spec_from_dict

    with RunStore(args.run_dir) as store:
        job = spec_from_dict(store.job(), args.run_dir)
        status = store.status()
        warm = store.warm_start()
        state = RunState(job.goals(), job.resources.trials, started_s=time.time())
        finals = 0
        for item in store.outcomes():  # what the counts need, without reading the candidates
            if is_final(item.result):
                finals += 1
            else:
                state.add(item)
    word = status["state"]
    if word == "running" and not driver_running(args.run_dir):
        word = "stopped (driver not running); continue with: cosearch resume " + str(args.run_dir)
    console.print(f"{args.run_dir}: {word}")
    if status.get("reason"):
        console.print(f"  {status['reason']}")
    console.print(summary_line(state).split("  elapsed")[0])
    if warm:
        console.print(
            f"warm start from {warm['from']}: {warm['reused']} results reused, {warm['told']} told to the strategy only"
        )
    if job.finalize is not None:
        console.print(f"final trainings of the search's picks: {finals} of at most {job.finalize.top_k} stored")
    if state.skipped:
        console.print(savings_line(state))
    shown = list(state.failures)[-STATUS_FAILURES:]
    if state.failed > len(shown):
        console.print(
            f"  ({state.failed - len(shown)} earlier failures not listed; `cosearch pareto --all` lists every result)"
        )
    for item in shown:
        console.print(f"  failed #{item.id}: {item.result.error}", style="red")
    return 0


def _cmd_pareto(args: argparse.Namespace) -> int:
    _print_pareto(Path(args.run_dir), show_all=args.all, device=args.device, budgets=args.budget, form=args.format)
    return 0


def _print_pareto(
    run_dir: Path, show_all: bool, device: str | None = None, budgets: Sequence[str] = (), form: str = "table"
) -> None:
    from cosearch.report import select

    chosen = select(run_dir, every=show_all, device=device, budgets=budgets)
    if form != "table":
        _print_records(chosen, form)
        return
    budgets = ", ".join(map(str, chosen.goals.constraints)) or "none"
    of = " (final, standalone trainings of the search's picks)" if chosen.finals and not show_all else ""
    title = f"{'All results' if show_all else 'Pareto set'}{of} of {run_dir} (budgets: {budgets})"
    table = Table(title=title, title_justify="left")
    table.add_column("id", justify="right")
    if show_all:
        table.add_column("status")
        table.add_column("pareto")
    metrics = chosen.columns
    for metric in metrics:
        table.add_column(metric.replace("@", "\n@"), justify="right")
    if chosen.finals:
        table.add_column("searched\naccuracy", justify="right")
    table.add_column("compression")
    table.add_column("arch")
    if show_all:
        table.add_column("error")
    for row in chosen.rows:
        cells = [str(row.id)]
        if show_all:
            cells += [row.status if row.status != "ok" or row.feasible else "over budget", "*" if row.pareto else ""]
        for metric in metrics:
            value = row.metrics.get(metric)
            cells.append("-" if value is None else (f"{value:.2%}" if metric == "accuracy" else f"{value:.4g}"))
        if chosen.finals:
            cells.append("-" if row.searched_accuracy is None else f"{row.searched_accuracy:.2%}")
        cells += [row.policy, row.arch]
        if show_all:
            cells.append(row.error or "")
        table.add_row(*cells)
    console.print(table)
    if not chosen.front:
        console.print("no result meets every budget yet" if chosen.any_results else "no results yet")


def _print_records(chosen, form: str) -> None:
    """csv or json on stdout, for other programs: every metric any shown row has, full precision."""
    import csv
    import json

    if form == "json":
        sys.stdout.write(json.dumps([row.to_dict() for row in chosen.rows], indent=1) + "\n")
        return
    metrics = chosen.columns + sorted({m for r in chosen.rows for m in r.metrics} - set(chosen.columns))
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(
        [
            "id",
            "status",
            "feasible",
            "pareto",
            "final",
            *metrics,
            "searched_accuracy",
            "compression",
            "arch",
            "key",
            "error",
        ]
    )
    for row in chosen.rows:
        values = [row.metrics.get(m, "") for m in metrics]
        key = row.candidate.key if row.candidate is not None else ""
        flags = [int(row.feasible), int(row.pareto), int(row.final)]
        extra = "" if row.searched_accuracy is None else row.searched_accuracy
        writer.writerow([row.id, row.status, *flags, *values, extra, row.policy, row.arch, key, row.error or ""])


def _cmd_report(args: argparse.Namespace) -> int:
    from cosearch.report.html import write_report

    console.print(f"wrote {write_report(args.run_dir, args.out)}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from cosearch.core.objectives import DEFAULT_DEVICE
    from cosearch.export import export

    pick = args.pick
    if args.best is not None:
        from cosearch.report import best

        row, why = best(args.run_dir, args.best, args.where)  # a bad rule or none met: exit 2, nothing written
        pick = row.id
        console.print(why)
    elif args.where:
        raise CosearchError("--where chooses among results for --best; with --pick ID the result is already chosen")
    if args.finetune < 0:
        raise CosearchError(f"--finetune {args.finetune}: a number of epochs >= 1 (or 0: none)")
    out = Path(args.out or Path(args.run_dir) / f"export-{pick}")
    card = export(args.run_dir, pick, out, finetune_epochs=args.finetune, portable=args.portable)
    info = card["export"]
    console.print(f"wrote {out / 'model.onnx'} ({info['file_bytes'] / 1024:.1f} KiB) and {out / 'card.json'}")
    console.print(
        f"ONNX Runtime: val accuracy {info['onnx_accuracy']['val']:.2%}, test accuracy {info['onnx_accuracy']['test']:.2%}, "
        f"latency {info['latency_ms']['median_ms']:.4f} ms median (batch {info['latency_ms']['batch_size']}, "
        f"{info['latency_ms']['threads']} thread, {info['latency_ms']['runs']} runs); "
        f"max |logit diff| vs PyTorch {info['max_abs_logit_diff_vs_pytorch']:.1e}"
    )
    if card["finetune"]:
        tuned = card["finetune"]
        console.print(
            f"fine-tuned {tuned['epochs']} epochs on {tuned['images']} training and validation images"
            f"{' with distillation' if tuned['distilled'] else ''}: test accuracy {tuned['test_accuracy_before']:.2%} -> "
            f"{info['onnx_accuracy']['test']:.2%} (validation was trained on: test is the held-out figure)"
        )
    search_ms = card["search_metrics"].get(f"latency_ms@{DEFAULT_DEVICE}")
    if search_ms:
        console.print(f"the search measured {search_ms:.4f} ms for it (default session options, as above)")
    if info["compact"]:
        small = info["compact"]
        console.print(
            f"also wrote {out / small['file']} ({small['file_bytes'] / 1024:.1f} KiB: weight-only layers as integers); "
            f"load it with the session config {small['session_config']} to run at "
            f"{small['latency_ms']['median_ms']:.4f} ms median (default options: {small['latency_ms_default_session']['median_ms']:.4f} ms)"
        )
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    from cosearch import build
    from cosearch.job import profiling_job

    # Only the sections profiling needs: a job may name the very table this command writes.
    job = profiling_job(args.job, args.space)
    if args.space and args.job and args.space != job.search_space.name:
        raise CosearchError(
            f"--space {args.space} differs from the job's search space {job.search_space.name!r}; give one"
        )
    devices = build.device_profiles(job)
    device = devices.get(args.device)
    if device is None or not device.measured:
        measured = sorted(name for name, d in devices.items() if d.measured)
        raise CosearchError(f"--device {args.device!r}: a measured device to profile on, one of {measured}")
    shape = _input_shape(args.input_shape) if args.input_shape else job.task.input_shape
    out = Path(args.out)
    if out.is_dir():
        raise CosearchError(f"--out {out} is a folder; give a file name, e.g. {out / 'lut.json'}")
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work, so a bad path fails now
    for name, value in (
        ("--max-networks", args.max_networks),
        ("--calibration", args.calibration),
        ("--patience", args.patience),
        ("--passes", args.passes),
    ):
        if value < 1:
            raise CosearchError(f"{name} {value}: an integer >= 1")
    import torch

    from cosearch.hardware.lut import profile, sampled_graphs

    torch.set_num_threads(1)
    joint = build.make_joint_space(job)
    graphs = sampled_graphs(joint, shape, 10, args.seed, args.max_networks)
    console.print(
        f"profiling {job.search_space.name} at input {list(shape)} on {device.name} "
        f"({device.settings.threads} thread, batch {device.settings.batch_size}); this machine must have the device"
    )
    from rich.progress import Progress, TextColumn

    with Progress(TextColumn("{task.description}"), console=console, transient=True) as bar:
        task = bar.add_task("drawing networks")
        table = profile(
            graphs,
            shape,
            device.name,
            device.settings,
            args.calibration,
            args.patience,
            args.passes,
            listener=lambda s: bar.update(
                task,
                description=f"{s['stage']}: networks {s['networks']}  layer configurations {s['entries']}"
                + (f"  timed {s['timed']}" if "timed" in s else ""),
            ),
        )
    table.source.update(
        space=job.search_space.name, space_params=job.search_space.params, command=" ".join(sys.argv[1:])
    )
    table.save(args.out)
    fit = table.source["calibration"]
    console.print(
        f"wrote {args.out}: {len(table.entries)} layer configurations from {table.source['networks_drawn']} networks, "
        f"overhead {table.overhead_ms:.4f} ms, per-op scales {', '.join(f'{op} {v:.2f}' for op, v in table.op_scales.items())} ({fit['networks']} networks measured whole, "
        f"{fit['within_10pct']:.0%} within 10 % in-sample), {table.source['profile_s']:.0f} s"
    )
    return 0


def _input_shape(text: str) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise CosearchError(f"--input-shape {text!r}: C,H,W as three positive integers, e.g. 3,32,32")
    return shape  # type: ignore[return-value]


COMMANDS = {
    "run": _cmd_run,
    "resume": _cmd_resume,
    "status": _cmd_status,
    "pareto": _cmd_pareto,
    "report": _cmd_report,
    "export": _cmd_export,
    "profile": _cmd_profile,
}

if __name__ == "__main__":
    sys.exit(main())
