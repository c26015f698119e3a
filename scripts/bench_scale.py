"""Controller, store and strategy overhead as a run grows: synthetic evaluations (microseconds
each) on local Ray at concurrency 2, so what is timed is cosearch itself.

    python scripts/bench_scale.py --sizes 1000 10000 --out benchmarks/scale

Each (strategy, size) runs in its own driver process (`--one`), so its peak memory is its own.
Time per evaluation is reported over windows of the run (the second tenth, after Ray's workers have started, and the last tenth), so a
cost that grows with the run shows as a ratio above 1.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOTES = "## Notes"  # benchmarks/scale.md keeps this section when the table is written again
STRATEGIES = ["random", "regularized_evolution", "nsga2", "reinforce", "gp", "optuna:tpe", "optuna:nsga2"]
JOB = {
    "name": "scale",
    "task": {"dataset": "digits"},
    "search_space": {"name": "nb201", "channels": 16, "cells_per_stage": 1},
    "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.25, 0.5, 0.75]},
    "evaluator": {"name": "synthetic"},
    "objectives": ["accuracy", "latency_ms", "size_kb"],
    "budgets": ["latency_ms@local-cpu <= 1.2", "size_kb <= 4"],
    "resources": {"concurrency": 2, "seed": 0},
}


def run_one(
    strategy: str, trials: int, run_dir: Path, marks_path: Path | None = None, params: dict | None = None
) -> dict:
    from rich.console import Console

    from cosearch.cli.progress import SearchProgress
    from cosearch.controller import Controller
    from cosearch.job import spec_from_dict

    job = spec_from_dict(
        {**JOB, "strategy": {"name": strategy, **(params or {})}, "resources": {**JOB["resources"], "trials": trials}}
    )
    marks: dict[int, float] = {}
    every = max(1, trials // 100)
    log = open(run_dir.parent / "progress.log", "w")  # the CLI's display, as `cosearch run JOB > log` shows it
    display = SearchProgress(Console(file=log, width=200))
    marks_file = open(marks_path, "a") if marks_path else None  # read back if the run is cut off
    start = time.perf_counter()

    def listener(state) -> None:
        display(state)
        n = state.evaluated
        if n % every == 0 and n not in marks:
            marks[n] = time.perf_counter()
            if marks_file:
                marks_file.write(json.dumps([n, marks[n] - start]) + "\n")
                marks_file.flush()

    controller = Controller.start(job, run_dir, listener=listener)
    ready_s = time.perf_counter() - start
    state = controller.run()
    controller.close()
    wall_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    timed = {}
    for command in ("pareto", "status", "report"):  # what a user runs on the finished run
        begin = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "cosearch.cli.main", command, str(run_dir)], check=True, capture_output=True
        )
        timed[f"{command}_s"] = time.perf_counter() - begin
    points = sorted(marks.items())
    window = max(1, len(points) // 10)

    def per_eval_ms(part: list[tuple[int, float]]) -> float:
        (n0, t0), (n1, t1) = part[0], part[-1]
        return 1000 * (t1 - t0) / max(1, n1 - n0)

    return {
        "strategy": label(strategy, params),
        "evaluations": state.evaluated,
        "wall_s": wall_s,
        "startup_s": ready_s,
        "driver_peak_rss_mb": peak_mb,
        "first_ms_per_eval": per_eval_ms(points[window : 2 * window + 1]),  # the first tenth warms Ray up
        "last_ms_per_eval": per_eval_ms(points[-window - 1 :]),
        **timed,
        "report_kb": (run_dir / "report.html").stat().st_size / 1024,
        "db_mb": (run_dir / "cosearch.db").stat().st_size / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES)
    parser.add_argument("--large-size", type=int, default=0, help="one more size, run for --large-strategies only")
    parser.add_argument("--large-strategies", nargs="+", default=["random", "regularized_evolution", "nsga2"])
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="per run; a slower one reports how far it got")
    parser.add_argument("--large-timeout-s", type=float, default=1200.0, help="per run of --large-size")
    parser.add_argument(
        "--strategy-params",
        type=json.loads,
        default={},
        help='JSON: job-file parameters per strategy, e.g. \'{"optuna:tpe": {"history_size": 200}}\'',
    )
    parser.add_argument("--one", nargs=3, metavar=("STRATEGY", "N", "MARKS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        strategy, size, marks = args.one
        params = args.strategy_params.get(strategy)
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(run_one(strategy, int(size), Path(tmp) / "run", Path(marks), params)))
        return
    plan = [(size, s) for size in args.sizes for s in args.strategies]
    plan += [(args.large_size, s) for s in args.large_strategies] if args.large_size else []
    rows = []
    for size, strategy in plan:
        with tempfile.TemporaryDirectory() as tmp:
            marks = Path(tmp) / "marks.jsonl"
            limit_s = args.large_timeout_s if size == args.large_size else args.timeout_s
            command = [sys.executable, __file__, "--one", strategy, str(size), str(marks)]
            command += ["--strategy-params", json.dumps(args.strategy_params)]
            # Its own session, so that a run cut off is stopped with the Ray processes it started.
            child = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
            )
            try:
                out, err = child.communicate(timeout=limit_s)
                row = json.loads(out.strip().splitlines()[-1]) if child.returncode == 0 else None
                if row is None:
                    print(err[-2000:], file=sys.stderr)
                    row = {
                        "strategy": label(strategy, args.strategy_params.get(strategy)),
                        "error": f"exit {child.returncode}",
                    }
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.communicate()
                lines = marks.read_text().splitlines() if marks.exists() else []
                reached = json.loads(lines[-1]) if lines else [0, 0.0]
                row = {
                    "strategy": label(strategy, args.strategy_params.get(strategy)),
                    "error": f"cut off at {limit_s:.0f} s: {reached[0]:,} done in {reached[1]:.0f} s",
                }
        row["size"] = size
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.with_suffix(".json").write_text(
                json.dumps({"command": shlex.join(sys.argv), "rows": rows}, indent=1)
            )
            md = args.out.with_suffix(".md")
            notes = md.read_text().partition(NOTES)[2] if md.exists() else ""  # what people wrote below stays
            md.write_text(table(rows, shlex.join(sys.argv[1:])) + (f"\n{NOTES}{notes}" if notes else ""))


def label(strategy: str, params: dict | None) -> str:
    return strategy + (" (" + ", ".join(f"{k} {v}" for k, v in params.items()) + ")" if params else "")


def table(rows: list[dict], argv: str) -> str:
    lines = [
        "# Controller overhead as a run grows",
        "",
        f"`python scripts/bench_scale.py {argv}` (synthetic evaluator, local Ray, concurrency 2, this machine).",
        "ms/eval: driver wall time per stored result over the second tenth of the run (after Ray's workers start) and the last tenth.",
        "",
        "| evaluations | strategy | wall s | driver peak MB | ms/eval 10-20 % | ms/eval 90-100 % | last/first "
        "| pareto s | status s | report s | report KB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']:,} | {r['strategy']} | {r['error']} | | | | | | | | |")
            continue
        lines.append(
            f"| {r['evaluations']:,} | {r['strategy']} | {r['wall_s']:.1f} | {r['driver_peak_rss_mb']:.0f} | "
            f"{r['first_ms_per_eval']:.2f} | {r['last_ms_per_eval']:.2f} | {r['last_ms_per_eval'] / r['first_ms_per_eval']:.2f} | "
            f"{r['pareto_s']:.1f} | {r['status_s']:.1f} | {r['report_s']:.1f} | {r['report_kb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
