"""Does distillation earn its place on the Pareto front? The demo search with `distill_alpha` searched.

    python scripts/bench_distill_front.py [--seeds 0,1,2] [--temperature T] [--out benchmarks]

Runs `examples/digits.yaml` with `distill_alpha: [0.0, 0.5, 0.9]` and a resnet18 teacher trained
by the run (10 epochs), at the job's default `temperature` unless `--temperature` is given, once
per seed, and counts, among the trained results and among the
feasible Pareto set, the share whose policy distils (alpha > 0). A share on the front above the
share among trained results means distilled candidates win more than their number. Writes
OUT/distill_front.json and OUT/distill_front.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ALPHAS = [0.0, 0.5, 0.9]


def render(report: dict) -> list[str]:
    rows = report["runs"]
    trained = sum(r["trained"] for r in rows)
    trained_d = sum(r["trained_distilled"] for r in rows)
    front = sum(r["front"] for r in rows)
    front_d = sum(r["front_distilled"] for r in rows)
    lines = [
        "# Distillation on the Pareto front",
        "",
        f"Command: `{report['command']}` on {report['machine']}. The demo job (`examples/digits.yaml`, digits at 32x32,",
        f"24 evaluations) with `distill_alpha: {ALPHAS}`, temperature {report.get('temperature', 4.0):g}, and a resnet18 teacher",
        "trained 10 epochs by each run.",
        "",
        "| seed | wall s | teacher val accuracy | trained | of them distilled | feasible Pareto set | of them distilled "
        "| alphas on the front | best accuracy (alpha) |",
        "|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    lines += [
        f"| {r['seed']} | {r['wall_s']:.0f} | {r['teacher'].get('val_accuracy', float('nan')):.2%} | {r['trained']} | "
        f"{r['trained_distilled']} | {r['front']} | {r['front_distilled']} | {r['front_alphas']} | "
        f"{r['best_accuracy']:.2%} ({r['best_alpha']:g}) |"
        for r in rows
    ]
    lines += [
        "",
        f"Over all seeds: {trained_d} of {trained} trained results distil ({trained_d / max(trained, 1):.0%}); "
        f"{front_d} of {front} Pareto members do ({front_d / max(front, 1):.0%}).",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperature", type=float, help="the soft labels' temperature (default: the job's default)")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    from cosearch.controller import RunStore
    from cosearch.job import spec_from_dict
    from cosearch.report import pareto_ids

    job = yaml.safe_load((ROOT / "examples" / "digits.yaml").read_text())
    job["compression"]["distill_alpha"] = ALPHAS
    job["compression"]["teacher"] = {"model": "resnet18", "epochs": 10}
    if args.temperature is not None:
        job["compression"]["temperature"] = args.temperature
    temperature = spec_from_dict(job).compression.temperature
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for seed in [int(s) for s in args.seeds.split(",")]:
            job["resources"]["seed"] = seed
            path, run_dir = Path(work) / f"job{seed}.yaml", Path(work) / f"run{seed}"
            path.write_text(yaml.safe_dump(job))
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "cosearch.cli.main", "run", str(path), "--run-dir", str(run_dir)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            wall_s = time.perf_counter() - start
            with RunStore(run_dir) as store:
                spec = spec_from_dict(store.job())
                results = store.results()
                teacher = (store.teacher() or ({},))[0]
            front = set(pareto_ids(results, spec.goals()))
            trained = [r for r in results if r.result.ok]
            alpha = {r.id: r.result.candidate.policy.network["distill_alpha"] for r in trained}
            rows.append(
                {
                    "seed": seed,
                    "wall_s": wall_s,
                    "teacher": teacher,
                    "trained": len(trained),
                    "trained_distilled": sum(a > 0 for a in alpha.values()),
                    "front": len(front),
                    "front_distilled": sum(alpha[i] > 0 for i in front),
                    "front_alphas": sorted(alpha[i] for i in front),
                    "best_accuracy": max(r.result.metrics["accuracy"] for r in trained),
                    "best_alpha": alpha[max(trained, key=lambda r: r.result.metrics["accuracy"]).id],
                }
            )
    command = "python scripts/bench_distill_front.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = platform.processor() or platform.machine()
    report = {"command": command.strip(), "machine": machine, "temperature": temperature, "runs": rows}
    (out / "distill_front.json").write_text(json.dumps(report, indent=2))
    lines = render(report)
    (out / "distill_front.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
