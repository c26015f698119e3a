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
from bench_supernet import SPACES, data_text, task

METRIC = "latency_ms@local-cpu"


def gp_pool() -> int:
    """gp's default `pool_size`: the candidates its surrogate scores per proposal."""
    import inspect

    from cosearch.strategies.gp import GaussianProcessBO

    return inspect.signature(GaussianProcessBO.__init__).parameters["pool_size"].default


def job(args, evaluator: dict, strategy: dict, trials: int, finalize: dict | None) -> dict:
    return {
        "name": "supernet-search",
        "task": task(args.image_size, args.cifar10),
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


def one_seed(args, seed: int, root: Path) -> dict:
    """Runs A and B on `seed` (the runs' seed: their splits, samples and trainings) in `root`."""
    from cosearch.controller import Controller
    from cosearch.job import spec_from_dict

    args = argparse.Namespace(**{**vars(args), "seed": seed})
    supernet = {"name": "supernet", "epochs": args.supernet_epochs, "finetune_steps": args.finetune_steps}
    if args.sandwich:
        supernet["sandwich"] = args.sandwich
    finalize = {"top_k": args.top_k, "final_epochs": args.train_epochs, "from": "inherited"}
    start = time.perf_counter()
    Controller.start(spec_from_dict(job(args, supernet, {"name": "gp"}, args.trials, finalize)), root / "a").run()
    wall_a = time.perf_counter() - start
    print(f"seed {seed}: supernet search {wall_a:.0f} s", flush=True)

    evolution = {"name": "regularized_evolution", "population_size": 10, "sample_size": 3}
    start, trials = time.perf_counter(), args.chunk
    Controller.start(spec_from_dict(job(args, {"name": "train"}, evolution, trials, None)), root / "b").run()
    while time.perf_counter() - start < wall_a:
        trials += args.chunk
        Controller.resume(root / "b", trials=trials).run()
    wall_b = time.perf_counter() - start
    print(f"seed {seed}: evolution {trials} trials in {wall_b:.0f} s", flush=True)

    a, b = points(root / "a", finals_only=True), points(root / "b", finals_only=False)
    searched = points(root / "a", finals_only=False)
    reference = (0.0, 1.1 * max(lat for _, lat in a + b))
    hv_a, hv_b = hypervolume(a, reference), hypervolume(b, reference)
    return {
        "seed": seed,
        "reference": reference,
        "supernet_search": {
            "wall_s": wall_a,
            "evaluated": len(searched) - len(a),
            "finals": len(a),
            "hypervolume": hv_a,
            "front": front(a),
        },
        "evolution": {"wall_s": wall_b, "trials": len(b), "hypervolume": hv_b, "front": front(b)},
        "ratio": hv_a / hv_b if hv_b else float("nan"),
    }


def markdown(args, summary: dict) -> str:
    runs, pool = summary["seeds"], gp_pool()
    ratios = np.array([r["ratio"] for r in runs])
    lines = [
        "# Supernet search against evolution at equal wall time",
        "",
        f"`{summary['command']}`: {data_text(args.image_size, args.cifar10)}, the {args.space} space, weight bits "
        "(4, 8, 32) x sparsity (0, 0.25, 0.5, 0.75); objectives accuracy and measured latency; 2 CPU cores, "
        f"concurrency 2. Standalone training {args.train_epochs} epochs + 2 fine-tune. Per seed (the runs' seed: "
        "splits, samples, trainings), the hypervolume of each run's standalone Pareto set against (accuracy 0, "
        "1.1 x the slowest latency either run measured). Supernet search: "
        f"{args.supernet_epochs} supernet epochs, sandwich {args.sandwich}, gp choosing each of {args.trials} "
        f"evaluations among a pool of up to {pool} mutants and samples its surrogate scores (so up to "
        f"{pool * args.trials:,} candidates through the predictor), {args.finetune_steps} fine-tune steps each, "
        f"then its top {args.top_k} by Pareto rank trained standalone from their inherited weights.",
        "",
        "| seed | supernet search: wall s | evaluated | finals | hypervolume "
        "| evolution: wall s | trials | hypervolume | supernet / evolution |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in runs:
        s, e = r["supernet_search"], r["evolution"]
        lines.append(
            f"| {r['seed']} | {s['wall_s']:.0f} | {s['evaluated']} | {s['finals']} | {s['hypervolume']:.4f} "
            f"| {e['wall_s']:.0f} | {e['trials']} | {e['hypervolume']:.4f} | {r['ratio']:.3f} |"
        )
    spread = f" +- {ratios.std(ddof=1):.3f} (sd)" if len(ratios) > 1 else ""
    lines += [
        "",
        f"Supernet search / evolution hypervolume: {ratios.mean():.3f}{spread} over {len(ratios)} seed(s); "
        f"the supernet search is higher on {int((ratios > 1).sum())} of {len(ratios)}.",
        "",
        "Fronts (accuracy, latency ms):",
        "",
    ]
    for r in runs:
        lines.append(
            f"- seed {r['seed']}, supernet search finals: "
            + ", ".join(f"({a:.3f}, {lat:.4f})" for a, lat in r["supernet_search"]["front"])
        )
        lines.append(
            f"- seed {r['seed']}, evolution: "
            + ", ".join(f"({a:.3f}, {lat:.4f})" for a, lat in r["evolution"]["front"])
        )
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--seeds", default="0", help="comma-separated; each seed runs both searches")
    parser.add_argument("--cifar10", help="a local cifar-10-batches-py folder: CIFAR-10 instead of the digits")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs = []
    try:
        for seed in (int(s) for s in args.seeds.split(",")):
            root = Path(tempfile.mkdtemp(prefix="bench-supernet-search-"))
            try:
                runs.append(one_seed(args, seed, root))
            finally:
                shutil.rmtree(root, ignore_errors=True)
    finally:
        ray.shutdown()
    summary = {"command": "python scripts/bench_supernet_search.py " + " ".join(sys.argv[1:]), "seeds": runs}
    text = markdown(args, summary)
    print(text)
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)


if __name__ == "__main__":
    main()
