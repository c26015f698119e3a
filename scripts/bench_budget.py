"""The same search with and without checking budgets before training, side by side.

    python scripts/bench_budget.py [--job examples/digits_8px.yaml] [--trials 40] [--seeds 0,1] \
        [--budget 'size_kb <= 50' ...] [--out benchmarks]

Each seed runs the job twice on local Ray: `prefilter: true` (a candidate over a budget by its
predicted or measured costs is stored as infeasible, never trained) and `prefilter: false`
(every candidate trained). Reports trainings avoided, wall time, and the hypervolume of the
feasible Pareto front (reference point: the budgets' bounds). Writes OUT/budget.json and .md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def front_hypervolume(results, goals, reference: np.ndarray) -> float:
    from cosearch.core.pareto import hypervolume, pareto_front

    feasible = [r for r in results if goals.feasible(r)]
    if not feasible:
        return 0.0
    values, _ = goals.arrays(feasible)
    return hypervolume(values[pareto_front(values)], reference)


def reference_point(goals) -> np.ndarray:
    """Per objective the budget's bound (maximised ones negated); objectives without one are left out."""
    bounds = {c.metric: c.bound for c in goals.constraints}
    missing = [o.metric for o in goals.objectives if o.metric not in bounds]
    if missing:
        raise SystemExit(f"every objective needs a budget to bound the hypervolume; add --budget for {missing}")
    return np.array([-bounds[o.metric] if o.direction == "max" else bounds[o.metric] for o in goals.objectives])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--job", default="examples/digits_8px.yaml")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--budget", action="append", default=[], help="replaces the job's budget on the same metric")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    import ray

    from cosearch.controller import Controller, RunStore
    from cosearch.core.objectives import Constraint
    from cosearch.job import spec_from_dict

    base = yaml.safe_load(Path(args.job).read_text())
    budgets = {str(Constraint.parse(b)).rsplit(" ", 1)[0]: b for b in base.get("budgets", [])}
    budgets.update({str(Constraint.parse(b)).rsplit(" ", 1)[0]: b for b in args.budget})
    base["budgets"] = list(budgets.values())
    base["resources"] = {**base.get("resources", {}), "trials": args.trials}
    ray.init(
        num_cpus=base["resources"].get("concurrency", 2),
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    rows = []
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            for prefilter in (True, False):
                job = spec_from_dict(
                    {
                        **base,
                        "evaluator": {"name": "train", "prefilter": prefilter},
                        "resources": {**base["resources"], "seed": seed},
                    }
                )
                goals = job.goals()
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    Controller.start(job, Path(tmp) / "run").run()
                    wall_s = time.perf_counter() - start
                    with RunStore(Path(tmp) / "run") as store:
                        results = [r.result for r in store.results()]
                trained = [r for r in results if "train_s" in r.timings_s]
                row = {
                    "seed": seed,
                    "prefilter": prefilter,
                    "evaluations": len(results),
                    "trained": len(trained),
                    "not_trained_over_budget": sum(r.status == "infeasible" for r in results),
                    "trained_but_over_budget": sum(r.ok and not goals.feasible(r) for r in results),
                    "feasible": sum(goals.feasible(r) for r in results),
                    "wall_s": round(wall_s, 1),
                    "training_s": round(
                        sum(r.timings_s["train_s"] + r.timings_s.get("compress_s", 0) for r in trained), 1
                    ),
                    "hypervolume": front_hypervolume(results, goals, reference_point(goals)),
                    "keys": sorted(r.candidate.key for r in results),
                }
                print(json.dumps({k: v for k, v in row.items() if k != "keys"}), flush=True)
                rows.append(row)
    finally:
        ray.shutdown()
    for row in rows:  # did both modes evaluate the same candidates?
        other = next(r for r in rows if r["seed"] == row["seed"] and r["prefilter"] != row["prefilter"])
        row["same_candidates_as_other_mode"] = row["keys"] == other["keys"]
    command = "python scripts/bench_budget.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "machine": platform.machine(),
        "budgets": base["budgets"],
        "trials": args.trials,
        "runs": [{k: v for k, v in r.items() if k != "keys"} for r in rows],
    }
    (out / "budget.json").write_text(json.dumps(data, indent=1))
    lines = [
        "# Budget pre-filter benchmark",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}.",
        "",
        f"Job `{args.job}`, {args.trials} evaluations per run, budgets: {', '.join(base['budgets'])}. Hypervolume of the",
        "feasible Pareto front, reference point = the budgets' bounds (larger is better).",
        "",
        "| seed | budgets checked before training | trained | over budget, not trained | trained but over budget | feasible | training s | wall s | hypervolume | same candidates |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['seed']} | {'yes' if r['prefilter'] else 'no'} | {r['trained']} | {r['not_trained_over_budget']} | {r['trained_but_over_budget']} "
            f"| {r['feasible']} | {r['training_s']:.0f} | {r['wall_s']:.0f} | {r['hypervolume']:.4g} | {'yes' if r['same_candidates_as_other_mode'] else 'no'} |"
        )
    (out / "budget.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
