"""A supernet search against regularized evolution with standalone training, given the same wall time.

    python scripts/bench_supernet_search.py --out benchmarks/supernet_search

Run A, the supernet search: one `cosearch run` whose evaluator is `supernet` (its training
included), `strategy: gp` (its surrogate picks each evaluation among mutants and samples, the
predictor-guided search of benchmarks/predictor.md) for `--trials` candidates, then `finalize`:
its best `--top-k` Pareto members trained standalone from their inherited weights. Run B,
regularized evolution with the `train` evaluator, resumed a few trials at a time until its wall
time reaches run A's. Both on the digits at `--image-size` (32 by default: latency differences
between candidates exceed the measurement's spread there), the same space, compression and seed,
on this machine's 2 cores at concurrency 2. Compared: the hypervolume of each run's standalone
(accuracy, latency) Pareto set (run A's finals; every result of run B) against one reference
point, (accuracy 0, 1.1 x the slowest latency either run measured).
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
from bench_supernet import SPACES

METRIC = "latency_ms@local-cpu"


def job(args, evaluator: dict, strategy: dict, trials: int, finalize: dict | None) -> dict:
    return {
        "name": "supernet-search",
        "task": {"dataset": "digits", "image_size": args.image_size},
        "search_space": {"name": args.space, **SPACES[args.space]},  # bench_supernet's shapes
        "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.25, 0.5, 0.75]},
        "evaluator": evaluator,
        "strategy": strategy,
        "objectives": ["accuracy", "latency_ms"],
        "training": {"epochs": args.train_epochs, "finetune_epochs": 2},
        "latency": {"warmup_runs": 10, "runs": 30},
        "resources": {"trials": trials, "concurrency": 2, "seed": args.seed},
        "finalize": finalize,
    }


def points(run_dir: Path, finals_only: bool) -> list[tuple[float, float]]:
    from cosearch.controller import RunStore
    from cosearch.controller.store import is_final

    with RunStore(run_dir) as store:
        results = [r.result for r in store.results()]
    return [
        (r.metrics["accuracy"], r.metrics[METRIC])
        for r in results
        if r.ok and (is_final(r) or not finals_only) and METRIC in r.metrics
    ]


def front(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return sorted(p for p in pts if not any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in pts))


def hypervolume(pts: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    from cosearch.core.pareto import hypervolume as hv

    if not pts:
        return 0.0
    return hv(np.array([(-a, lat) for a, lat in pts]), np.array([-reference[0], reference[1]]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("nb201", "mobilenet"), default="nb201")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--supernet-epochs", type=int, default=60)
    parser.add_argument("--sandwich", type=int, default=0, help="the supernet's sandwich rule (mobilenet)")
    parser.add_argument("--finetune-steps", type=int, default=20, help="the supernet evaluator's, per candidate")
    parser.add_argument("--trials", type=int, default=200, help="candidates the supernet search evaluates")
    parser.add_argument("--top-k", type=int, default=8, help="Pareto members the supernet search trains standalone")
    parser.add_argument("--train-epochs", type=int, default=8, help="standalone training (both runs, and finals)")
    parser.add_argument("--chunk", type=int, default=4, help="evolution's trials per resume while it has time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import ray

    from cosearch.controller import Controller
    from cosearch.job import spec_from_dict

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    root = Path(tempfile.mkdtemp(prefix="bench-supernet-search-"))
    try:
        supernet = {"name": "supernet", "epochs": args.supernet_epochs, "finetune_steps": args.finetune_steps}
        if args.sandwich:
            supernet["sandwich"] = args.sandwich
        finalize = {"top_k": args.top_k, "final_epochs": args.train_epochs, "from": "inherited"}
        start = time.perf_counter()
        Controller.start(spec_from_dict(job(args, supernet, {"name": "gp"}, args.trials, finalize)), root / "a").run()
        wall_a = time.perf_counter() - start
        print(f"supernet search: {wall_a:.0f} s", flush=True)

        evolution = {"name": "regularized_evolution", "population_size": 10, "sample_size": 3}
        start, trials = time.perf_counter(), args.chunk
        Controller.start(spec_from_dict(job(args, {"name": "train"}, evolution, trials, None)), root / "b").run()
        while time.perf_counter() - start < wall_a:
            trials += args.chunk
            Controller.resume(root / "b", trials=trials).run()
        wall_b = time.perf_counter() - start
        print(f"evolution: {trials} trials in {wall_b:.0f} s", flush=True)

        a, b = points(root / "a", finals_only=True), points(root / "b", finals_only=False)
        searched = points(root / "a", finals_only=False)
        reference = (0.0, 1.1 * max(lat for _, lat in a + b))
        summary = {
            "command": "python scripts/bench_supernet_search.py " + " ".join(sys.argv[1:]),
            "reference": reference,
            "supernet_search": {
                "wall_s": wall_a,
                "evaluated": len(searched) - len(a),
                "finals": len(a),
                "hypervolume": hypervolume(a, reference),
                "front": front(a),
            },
            "evolution": {
                "wall_s": wall_b,
                "trials": len(b),
                "hypervolume": hypervolume(b, reference),
                "front": front(b),
            },
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
        ray.shutdown()
    s, e = summary["supernet_search"], summary["evolution"]
    ratio = s["hypervolume"] / e["hypervolume"] if e["hypervolume"] else float("nan")
    lines = [
        "# Supernet search against evolution at equal wall time",
        "",
        f"`{summary['command']}`: digits at {args.image_size}x{args.image_size}, the {args.space} space, weight bits "
        "(4, 8, 32) x sparsity (0, 0.25, 0.5, 0.75); objectives accuracy and measured latency; 2 CPU cores, "
        f"concurrency 2. Standalone training {args.train_epochs} epochs + 2 fine-tune. Hypervolume of each run's "
        f"standalone Pareto set against (accuracy 0, {reference[1]:.4f} ms).",
        "",
        "| run | wall s | candidates | standalone results | hypervolume |",
        "|---|---:|---:|---:|---:|",
        f"| supernet search ({args.supernet_epochs} supernet epochs, sandwich {args.sandwich}, gp, "
        f"{args.finetune_steps} fine-tune steps each, finals of the top {args.top_k}) | {s['wall_s']:.0f} "
        f"| {s['evaluated']} | {s['finals']} | {s['hypervolume']:.4f} |",
        f"| regularized evolution, `train` evaluator | {e['wall_s']:.0f} | {e['trials']} | {e['trials']} "
        f"| {e['hypervolume']:.4f} |",
        "",
        f"Supernet search / evolution hypervolume: {ratio:.3f}.",
        "",
        "Fronts (accuracy, latency ms):",
        "",
        "- supernet search finals: " + ", ".join(f"({a:.3f}, {lat:.4f})" for a, lat in s["front"]),
        "- evolution: " + ", ".join(f"({a:.3f}, {lat:.4f})" for a, lat in e["front"]),
    ]
    print("\n".join(lines))
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
