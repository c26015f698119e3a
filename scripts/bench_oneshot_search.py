"""DARTS variants beside regularized evolution, each a whole run of the controller on the digits (or CIFAR-10).

    python scripts/bench_oneshot_search.py --seeds 0,1,2 --out benchmarks/oneshot_search
    python scripts/bench_oneshot_search.py --space darts --seeds 0,1,2 --out benchmarks/oneshot_search_darts

The latency budget T sits halfway between the all-skip cell's and the all-3x3-conv cell's (on the
DARTS space: every node reading both cell inputs through skip_connect, or through sep_conv_3x3)
measured latency (ONNX Runtime, batch 1, 1 thread, at `--image-size`). Every method runs the
same job with that budget; the darts runs search once per latency target (`--targets`, fractions
of T) and their derived cells are trained by the `train` evaluator like any candidate. Reported
per method: wall time of the run, the derived cells (standalone accuracy, measured latency,
how many of their 6 edges are parameter-free, whether the latency lands within 10 % of its
target), and the hypervolume of the run's feasible (accuracy, latency) front against one
reference point shared by all (accuracy 0, latency 2 T).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_supernet import data_text, task

PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3", "max_pool_3x3")


def space_section(args) -> dict:
    if args.space == "darts":
        return {"name": "darts", "channels": args.channels, "layers": args.layers}
    return {"name": "nb201", "channels": args.channels, "cells_per_stage": 1}


def uniform_arch(space: str, op: str) -> dict:
    """Every edge `op` (NB201), or every node reading both cell inputs through `op` (DARTS)."""
    if space == "darts":
        from cosearch.search_spaces.darts import STEPS, format_genotype

        cell = [(op, side) for _ in range(STEPS) for side in (0, 1)]
        return {"genotype": format_genotype({"normal": cell, "reduce": cell})}
    from cosearch.search_spaces.nb201 import EDGES, format_arch_str

    return {"cell": format_arch_str(dict.fromkeys(EDGES, op))}


def ops_of(arch: dict) -> list[str]:
    """The ops a cell (NB201) or both cells' kept pairs (DARTS) apply."""
    if "genotype" in arch:
        from cosearch.search_spaces.darts import CELLS, parse_genotype

        cells = parse_genotype(arch["genotype"])
        return [op for kind in CELLS for op, _ in cells[kind]]
    from cosearch.search_spaces.nb201 import parse_arch_str

    return list(parse_arch_str(arch["cell"]).values())


def base_job(args, strategy: dict, trials: int, budget_ms: float) -> dict:
    return {
        "name": "oneshot",
        "task": task(args.image_size, args.cifar10),
        "search_space": space_section(args),
        "compression": {"weight_bits": [32], "sparsity": [0.0]},  # the cell alone: what DARTS searches here
        "strategy": strategy,
        "objectives": ["accuracy", "latency_ms"],
        "budgets": [f"latency_ms <= {budget_ms:.6g}"],
        "training": {"epochs": args.train_epochs, "finetune_epochs": 0},
        "latency": {"warmup_runs": 20, "runs": 100},
        "resources": {"trials": trials, "concurrency": 2, "seed": args.seed},
    }


def budget(args) -> tuple[float, float, float]:
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._darts_torch import arch_cost

    job = spec_from_dict(base_job(args, {"name": "random"}, 1, 1.0))
    evaluator = build.make_evaluator(job)
    data = evaluator.data.load()
    conv = "sep_conv_3x3" if args.space == "darts" else "nor_conv_3x3"
    low = arch_cost(evaluator, uniform_arch(args.space, "skip_connect"), "latency_ms@local-cpu", data)
    high = arch_cost(evaluator, uniform_arch(args.space, conv), "latency_ms@local-cpu", data)
    return low, high, (low + high) / 2


def run(args, name: str, strategy: dict, trials: int, target_ms: float, root: Path) -> dict:
    from cosearch import build
    from cosearch.controller import Controller, RunStore
    from cosearch.job import spec_from_dict

    job = spec_from_dict(base_job(args, strategy, trials, target_ms))
    space = build.make_space(job)
    run_dir = root / name
    start = time.perf_counter()
    Controller.start(job, run_dir).run()
    wall = time.perf_counter() - start
    with RunStore(run_dir) as store:
        results = [r.result for r in store.results()]
        work = {}
        if strategy["name"] == "darts":
            for target in strategy.get("targets", [1.0]) if strategy.get("latency_weight", 0.2) > 0 else [1.0]:
                work[target] = store.work(f"darts:{float(target):g}")
        enas = store.work("enas:shared-weights") if strategy["name"] == "enas" else None
        table = store.work("darts:costs") if strategy["name"] == "darts" else None
    points = [
        (r.metrics["accuracy"], r.metrics["latency_ms@local-cpu"])
        for r in results
        if r.ok and r.metrics.get("latency_ms@local-cpu", np.inf) <= target_ms
    ]
    derived = []
    for target, output in work.items():
        arch = space.forms(output.get("arch") or {"cell": output["cell"]})[0].arch  # as the run stores it
        found = next((r for r in results if r.candidate.arch == arch), None)
        derived.append(_derived(arch, found, target, output["target"], output["seconds"], output["derived_estimate"]))
        derived[-1]["tries"] = output.get("derived_priced")  # the search's own pricing of each derived cell
    if enas is not None:  # its best candidates have no latency target: the budget is the goal
        derived += [_derived(r.candidate.arch, r, None, None, enas["seconds"]) for r in results[: len(enas["best"])]]
    row = {"method": name, "wall_s": wall, "results": len(results), "feasible_points": points, "derived": derived}
    if table is not None:  # the latency table every target's search read: how long it took, how well it fits
        row["table"] = {"seconds": table["seconds"], "fit": table["fit"]}
    return row


def _derived(
    arch: dict, found, fraction: float | None, goal: float | None, search_s: float, estimate: float | None = None
) -> dict:
    """A derived cell's row: its standalone result (None when it was not evaluated) against its target,
    and the latency the search estimated for it from its cost table."""
    latency = found.metrics.get("latency_ms@local-cpu") if found else None
    return {
        "target_fraction": fraction,
        "target_ms": goal,
        "estimate_ms": estimate,
        "arch": dict(arch),
        "parameter_free": sum(op in PARAMETER_FREE for op in ops_of(arch)),
        "accuracy": found.metrics.get("accuracy") if found else None,
        "latency_ms": latency,
        "within_10pct": None if latency is None or goal is None else abs(latency - goal) <= 0.1 * goal,
        "search_s": search_s,
        "status": found.status if found else "not evaluated",
    }


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    from cosearch.core.pareto import hypervolume as hv

    if not points:
        return 0.0
    values = np.array([(-a, lat) for a, lat in points])  # minimise: accuracy negated
    return hv(values, np.array([-reference[0], reference[1]]))


def summary(rows: list[dict]) -> list[dict]:
    """Per method over the seeds: mean and spread of hypervolume and wall time, and the derived cells'
    share within 10 % of their target and mean parameter-free edges."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        derived = [d for r in mine for d in r["derived"]]
        landed = [d["within_10pct"] for d in derived if d["within_10pct"] is not None]
        hv = np.array([r["hypervolume"] for r in mine])
        wall = np.array([r["wall_s"] for r in mine])
        out.append(
            {
                "method": method,
                "seeds": len(mine),
                "hypervolume_mean": float(hv.mean()),
                "hypervolume_std": float(hv.std(ddof=1)) if len(hv) > 1 else 0.0,
                "wall_s_mean": float(wall.mean()),
                "wall_s_std": float(wall.std(ddof=1)) if len(wall) > 1 else 0.0,
                "derived": len(derived),
                "within_10pct": f"{sum(landed)} of {len(landed)}" if landed else "-",
                "parameter_free_mean": float(np.mean([d["parameter_free"] for d in derived])) if derived else None,
                "derived_over_budget": sum(d["status"] == "infeasible" for d in derived),
            }
        )
    return out


def against_evolution(rows: list[dict]) -> list[dict]:
    """Per method, paired by seed with regularized evolution's run: its wall time as a share of
    evolution's, its hypervolume as a ratio of evolution's, and on how many seeds it reached
    evolution's hypervolume in at most a fifth of evolution's wall time (the issue's goal)."""
    evolution = {r["seed"]: r for r in rows if r["method"] == "regularized evolution"}
    out = []
    for method in dict.fromkeys(r["method"] for r in rows if r["method"] != "regularized evolution"):
        pairs = [(r, evolution[r["seed"]]) for r in rows if r["method"] == method and r["seed"] in evolution]
        if not pairs:
            continue
        share = np.array([r["wall_s"] / e["wall_s"] for r, e in pairs])
        ratio = np.array([r["hypervolume"] / e["hypervolume"] if e["hypervolume"] else np.nan for r, e in pairs])
        out.append(
            {
                "method": method,
                "seeds": len(pairs),
                "wall_share_mean": float(share.mean()),
                "hypervolume_ratio_mean": float(np.nanmean(ratio)),
                "hypervolume_ratio_min": float(np.nanmin(ratio)),
                "goal_met": int(
                    sum(r["hypervolume"] >= e["hypervolume"] and r["wall_s"] <= 0.2 * e["wall_s"] for r, e in pairs)
                ),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=16)
    parser.add_argument("--space", choices=("nb201", "darts"), default="nb201")
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--layers", type=int, default=5, help="DARTS cells (with --space darts)")
    parser.add_argument("--epochs", type=int, default=6, help="DARTS search epochs")
    parser.add_argument("--train-epochs", type=int, default=6, help="each candidate's standalone training")
    parser.add_argument("--targets", default="0.6,1.0", help="latency targets as fractions of the budget")
    parser.add_argument("--trials", type=int, default=24, help="regularized evolution's evaluations")
    parser.add_argument("--seeds", default="0", help="comma-separated; each method runs once per seed")
    parser.add_argument("--methods", help="comma-separated method names to run (default: all)")
    parser.add_argument("--cifar10", help="a local cifar-10-batches-py folder: CIFAR-10 instead of the digits")
    parser.add_argument("--out", help="write OUT.json and OUT.md")
    args = parser.parse_args()
    import ray
    import torch

    torch.set_num_threads(1)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    targets = [float(t) for t in args.targets.split(",")]
    args.seed = 0
    low, high, target_ms = budget(args)
    print(f"all-skip {low:.4f} ms, all-3x3 {high:.4f} ms: budget {target_ms:.4f} ms", flush=True)
    darts = {"name": "darts", "epochs": args.epochs, "targets": targets}
    methods = [
        ("darts beta-guard latency", {**darts, "collapse_guard": "beta"}, len(targets)),
        (
            "darts beta-guard latency argmax-derived",
            {**darts, "collapse_guard": "beta", "derivation": "argmax"},
            len(targets),
        ),
        ("darts no-guard latency", {**darts, "collapse_guard": "none"}, len(targets)),
        ("darts beta-guard no-latency", {**darts, "collapse_guard": "beta", "latency_weight": 0.0}, 1),
        ("gdas latency", {**darts, "collapse_guard": "gdas"}, len(targets)),
        (
            "enas shared weights",
            {"name": "enas", "epochs": args.epochs, "samples": 8, "top_k": len(targets)},
            len(targets),
        ),
        (
            "regularized evolution",
            {"name": "regularized_evolution", "population_size": 8, "sample_size": 3},
            args.trials,
        ),
    ]
    if args.methods:
        wanted = [m.strip() for m in args.methods.split(",")]
        unknown = set(wanted) - {name for name, _, _ in methods}
        if unknown:
            parser.error(f"--methods: unknown {sorted(unknown)}; known: {[name for name, _, _ in methods]}")
        methods = [m for m in methods if m[0] in wanted]
    root = Path(tempfile.mkdtemp(prefix="bench-oneshot-"))
    rows = []
    reference = (0.0, 2 * target_ms)
    try:
        for seed in (int(x) for x in args.seeds.split(",")):
            args.seed = seed
            for name, strategy, trials in methods:
                row = run(args, name, strategy, trials, target_ms, root / f"seed{seed}")
                row["seed"] = seed
                row["hypervolume"] = hypervolume(row.pop("feasible_points"), reference)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()
    table = summary(rows)
    if args.out:
        command = "python scripts/bench_oneshot_search.py " + " ".join(sys.argv[1:])
        payload = {
            "command": command,
            "budget_ms": target_ms,
            "all_skip_ms": low,
            "all_conv3_ms": high,
            "summary": table,
            "against_evolution": against_evolution(rows),
            "rows": rows,
        }
        Path(f"{args.out}.json").write_text(json.dumps(payload, indent=1) + "\n")
        if args.space == "darts":
            described = f"the DARTS space with {args.channels} channels and {args.layers} cells"
            ends = ("every node reading both cell inputs through skip_connect", "through sep_conv_3x3")
            unit = "pairs (mean of 16)"
        else:
            described, unit = f"nb201 with {args.channels} channels", "edges (mean of 6)"
            ends = ("the all-skip cell", "the all-3x3 cell")
        lines = [
            "# DARTS variants beside regularized evolution",
            "",
            f"`{command}`: {data_text(args.image_size, args.cifar10)}, {described}, "
            f"weights in float; budget latency_ms@local-cpu <= {target_ms:.4f} ms (halfway between {ends[0]}, "
            f"{low:.4f} ms, and {ends[1]}, {high:.4f} ms); every candidate trained {args.train_epochs} epochs; "
            "2 CPU cores, concurrency 2; the same seeds for every method. Hypervolume of the feasible "
            "(accuracy, latency) front against (0, 2T); mean +- standard deviation over the seeds.",
            "",
            f"| method | seeds | wall s | hypervolume | derived cells | within 10 % of target | parameter-free {unit} | derived over budget |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in table:
            free = "-" if t["parameter_free_mean"] is None else f"{t['parameter_free_mean']:.1f}"
            lines.append(
                f"| {t['method']} | {t['seeds']} | {t['wall_s_mean']:.0f} +- {t['wall_s_std']:.0f} | "
                f"{t['hypervolume_mean']:.4f} +- {t['hypervolume_std']:.4f} | {t['derived']} | {t['within_10pct']} | "
                f"{free} | {t['derived_over_budget']} |"
            )
        paired = payload["against_evolution"]
        if paired:
            lines += [
                "",
                "Paired by seed with regularized evolution (goal: its hypervolume in at most a fifth of its wall time):",
                "",
                "| method | seeds | wall time / evolution's | hypervolume / evolution's (mean, min) | seeds meeting the goal |",
                "|---|---:|---:|---:|---:|",
            ]
            lines += [
                f"| {p['method']} | {p['seeds']} | {p['wall_share_mean']:.2f} | {p['hypervolume_ratio_mean']:.3f}, "
                f"{p['hypervolume_ratio_min']:.3f} | {p['goal_met']} of {p['seeds']} |"
                for p in paired
            ]
        lines += [
            "",
            "Derivation: darts rows derive the most probable cell whose estimated latency lies in [0.9 T, T] "
            "(`derivation: budget`, the default), priced by the job's cost path and derived again while it misses; "
            "an `argmax-derived` row the strongest op per edge, `none` aside. The latency table the searches read is "
            "priced once per run before them: a least-squares fit to random cells (NB201) or genotypes (DARTS space).",
            "",
            f"Per seed, the derived cells (accuracy / measured latency ms / estimated ms / target ms / parameter-free {unit.split()[0]}):",
            "",
        ]
        for row in rows:
            cells = "; ".join(
                f"{'-' if d['accuracy'] is None else round(100 * d['accuracy'], 1)} % / "
                f"{d['latency_ms'] and round(d['latency_ms'], 4)} / {d.get('estimate_ms') and round(d['estimate_ms'], 4)} / "
                f"{d['target_ms'] and round(d['target_ms'], 4)} / "
                f"{d['parameter_free']}"
                for d in row["derived"]
            )
            fit = (row.get("table") or {}).get("fit")
            table = (
                f"; latency table priced in {row['table']['seconds']:.0f} s"
                + (
                    f", fitted to {fit['architectures']} architectures, leave-one-out error median "
                    f"{fit['loo_relative_error_median']:.1%}, max {fit['loo_relative_error_max']:.1%}"
                    if fit
                    else ""
                )
                if row.get("table")
                else ""
            )
            lines.append(
                f"- seed {row['seed']}, {row['method']}: hypervolume {row['hypervolume']:.4f}; {cells or 'no derived cells'}{table}"
            )
        Path(f"{args.out}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
