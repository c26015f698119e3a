"""How well a supernet ranks joint candidates, and what it costs: the same random candidates
(architecture and compression) scored on inherited weights and trained standalone twice.

    python scripts/bench_supernet.py --out benchmarks/supernet [--standalone-from benchmarks/supernet.json]

For each candidate: the `supernet` evaluator's accuracy (inherited, BatchNorm recalibrated,
compressed as the policy says) and the `train` evaluator's with two training seeds. Kendall's
tau and Spearman's rho between inherited and standalone accuracy, beside the tau between the two
standalone seeds: the ceiling any proxy can reach on this data (goal: at least 0.8 of it). Cost:
supernet training once, then seconds per candidate for each evaluator (both include the same
deployment, ONNX accuracy and latency measurement; their training parts are shown apart).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

SPACES = {
    "nb201": {"channels": 16, "cells_per_stage": 1},
    "darts": {"channels": 8, "layers": 5},
    "enas": {"channels": 16, "layers": 6},
    "mobilenet": {"stage_channels": (16, 24, 32), "stage_strides": (1, 2, 2), "depths": (1, 2), "head_channels": 64},
}
COMPRESSION = {"weight_bits": (4, 8, 32), "sparsity": (0.0, 0.25, 0.5, 0.75)}


CHANNEL_RATIOS: list[tuple[float, ...]] = [(0.0,)]  # --channel-ratios, on spaces whose supernet trains them
IMAGE_SIZE: list[int | None] = [None]  # --image-size, set in every process (the pool forks after main sets it)
CIFAR10: list[str | None] = [None]  # --cifar10, likewise
SUPERNET_SEED: list[int] = [0]  # of --supernet-seeds, the one benched now: its supernet's training and scoring


def task(image_size: int | None, cifar10: str | None) -> dict:
    """A job's `task` section: CIFAR-10 from a local folder (its own 32x32), or the digits at `image_size`."""
    if cifar10:
        return {"dataset": "cifar10", "path": str(cifar10)}
    return {"dataset": "digits", "image_size": image_size}


def data_text(image_size: int | None, cifar10: str | None) -> str:
    """What a benchmark's page says it ran on."""
    if cifar10:
        return f"CIFAR-10 ({cifar10}) at 32x32"
    return f"digits at {image_size or 8}x{image_size or 8}"


def make(kind: str, space_name: str, seed: int = 0, supernet: bytes | None = None, epochs: int = 1, **extra):
    from cosearch.evaluators.supernet import SupernetEvaluator
    from cosearch.evaluators.train import DataSettings, TrainEvaluator, TrainingSettings
    from cosearch.hardware import LatencySettings, MeasuredDevice
    from cosearch.search_spaces import SEARCH_SPACES

    space = SEARCH_SPACES.create(space_name, **SPACES[space_name])
    devices = (MeasuredDevice("local-cpu", LatencySettings(warmup_runs=10, runs=30)),)
    settings = {
        "data": DataSettings(**task(IMAGE_SIZE[0], CIFAR10[0])),
        "training": TrainingSettings(seed=seed),
        "devices": devices,
    }
    if kind == "train":
        return TrainEvaluator(space, **settings)
    return SupernetEvaluator(space, epochs=epochs, supernet=supernet, **settings, **extra)


def joint(space_name: str):
    from cosearch.search_spaces import SEARCH_SPACES, JointSpace

    return JointSpace(SEARCH_SPACES.create(space_name, **SPACES[space_name]), **compression(space_name))


def compression(space_name: str) -> dict:
    """The compression searched on `space_name`: COMPRESSION, and --channel-ratios where its supernet trains them."""
    from cosearch.search_spaces import SEARCH_SPACES

    pruned = CHANNEL_RATIOS[0] != (0.0,) and SEARCH_SPACES.get(space_name).elastic_channels
    return {**COMPRESSION, "channel_ratio": CHANNEL_RATIOS[0]} if pruned else dict(COMPRESSION)


def random_candidates(space, n: int) -> list:
    """`n` distinct random joint candidates, the same ones on every run (seed 0)."""
    rng = np.random.default_rng(0)
    candidates, seen = [], set()
    while len(candidates) < n:
        candidate = space.decode(space.sample(rng))
        if candidate.key not in seen:
            seen.add(candidate.key)
            candidates.append(candidate)
    return candidates


# Per process, as a run's Ray worker keeps its evaluator: the space's supernet evaluator (set by
# `load_supernet`, its supernet loaded once) and a `train` evaluator per training seed.
EVALUATORS: dict[str, object] = {}


def load_supernet(space_name: str, supernet: bytes, epochs: int, extra: dict) -> None:
    """A pool initializer: this process's supernet evaluator, so tasks need not carry the checkpoint."""
    EVALUATORS["supernet"] = make("supernet", space_name, SUPERNET_SEED[0], supernet, epochs, **extra)


def evaluate(args: tuple) -> dict:
    """`args`: (kind, space name, training seed, candidate JSON); kind "supernet" scores on the
    process's supernet evaluator (`load_supernet`), "train" trains standalone."""
    kind, space_name, seed, candidate_json = args
    from cosearch.core import Candidate

    key = "supernet" if kind == "supernet" else f"train seed {seed}"
    if key not in EVALUATORS:
        EVALUATORS[key] = make(kind, space_name, seed)
    evaluator = EVALUATORS[key]
    result = evaluator.evaluate(Candidate.from_json(candidate_json)).result
    if result.status != "ok":
        raise SystemExit(f"{kind} failed on {result.candidate.key}: {result.error}")
    t = result.timings_s
    return {
        "accuracy": result.metrics["accuracy"],
        "total_s": t["total_s"],
        "train_s": t.get("train_s", 0.0) + t.get("compress_s", 0.0),
    }


def warm_up(space_name: str, supernet: bytes, epochs: int, extra: dict) -> None:
    """A worker's start, as a run's worker has it after its first candidate: the supernet
    evaluator built, its supernet loaded, one spare candidate scored (imports, first ONNX
    sessions), so that no timed candidate of either evaluator pays for them."""
    began = time.perf_counter()
    load_supernet(space_name, supernet, epochs, extra)
    space = joint(space_name)
    spare = space.decode(space.sample(np.random.default_rng(12345)))
    evaluate(("supernet", space_name, 0, spare.to_json()))
    print(f"{space_name}: a worker warmed up in {time.perf_counter() - began:.1f} s (not counted)", flush=True)


def rank(a: list[float], b: list[float]) -> dict:
    from scipy import stats

    return {"kendall_tau": float(stats.kendalltau(a, b)[0]), "spearman_rho": float(stats.spearmanr(a, b)[0])}


def bench_space(
    space_name: str,
    n: int,
    epochs: int,
    bn_batches: int,
    finetune_steps: int,
    workers: int,
    reuse: dict | None = None,
    sandwich: int = 0,
    time_standalone: int = 0,
    elastic_compression: bool = True,
    sampling: str = "uniform",
    supernet_dir: Path | None = None,
) -> dict:
    """`reuse`: an earlier run's summary of this space, whose standalone trainings (the same
    candidates, seeds and settings: deterministic) are read instead of trained again; then the first
    `time_standalone` of them (spread over the list) are trained again here, so that the cost ratio
    is measured in this run, on the same candidates as the supernet's (and their accuracies are
    checked against the reused ones). `supernet_dir`: where trained supernets are kept by their
    settings, so that a run with the same ones scores the same supernet again (its training
    seconds are then the run's that trained it)."""
    space = joint(space_name)
    candidates = random_candidates(space, n)
    trained = {"epochs": epochs, "sandwich": sandwich, "elastic_compression": elastic_compression, "sampling": sampling}
    if SUPERNET_SEED[0]:  # (seed 0 left out: the settings that name supernets trained before the option)
        trained["seed"] = SUPERNET_SEED[0]
    kept_at = _supernet_file(supernet_dir, space_name, trained) if supernet_dir is not None else None
    checkpoint, supernet_s, info = stored_supernet(kept_at, space_name)
    if checkpoint is None:
        start = time.perf_counter()
        checkpoint, info = make("supernet", space_name, **trained).train_supernet(space, None, epochs=epochs)
        supernet_s = time.perf_counter() - start
        store_supernet(kept_at, checkpoint, supernet_s, info)
    print(f"{space_name}: supernet {epochs} epochs in {supernet_s:.0f} s, losses {info['losses'][::10]}", flush=True)
    extra = {
        "bn_batches": bn_batches,
        "finetune_steps": finetune_steps,
        "elastic_compression": elastic_compression,
        "sampling": sampling,
    }
    jobs = {
        "supernet": [("supernet", space_name, 0, c.to_json()) for c in candidates],
        "seed0": [("train", space_name, 0, c.to_json()) for c in candidates],
        "seed1": [("train", space_name, 1, c.to_json()) for c in candidates],
    }
    rows: dict[str, list[dict]] = {}
    if reuse is not None:
        stored = {row["key"]: row for row in reuse["per_candidate"]}
        if any(c.key not in stored for c in candidates):
            raise SystemExit(f"{space_name}: the reused run scored other candidates")
        for name in ("seed0", "seed1"):
            del jobs[name]
            total, train = reuse["s_per_candidate"][name], reuse["training_s_per_candidate"][name]
            rows[name] = [{"accuracy": stored[c.key][name], "total_s": total, "train_s": train} for c in candidates]
        if time_standalone:
            timed_at = [int(i) for i in np.linspace(0, n - 1, min(n, time_standalone))]
            jobs["timed"] = [("train", space_name, 0, candidates[i].to_json()) for i in timed_at]
    with ProcessPoolExecutor(workers, initializer=warm_up, initargs=(space_name, checkpoint, epochs, extra)) as pool:
        for name, work in jobs.items():
            began = time.perf_counter()
            rows[name] = list(pool.map(evaluate, work))
            print(f"{space_name}: {name} {len(work)} candidates in {time.perf_counter() - began:.0f} s", flush=True)
    timed = rows.pop("timed", None)
    if timed is not None:  # this run's standalone timings stand for both seeds', the supernet's on the same candidates
        again = [abs(r["accuracy"] - rows["seed0"][i]["accuracy"]) for i, r in zip(timed_at, timed)]
        print(f"{space_name}: retrained {len(timed)} standalone, largest accuracy change {max(again):.4f}", flush=True)
        for name in ("seed0", "seed1"):
            rows[name] = [{**row, "total_s": None, "train_s": None} for row in rows[name]]
            for i, r in zip(timed_at, timed):
                rows[name][i] = {**rows[name][i], "total_s": r["total_s"], "train_s": r["train_s"]}
        rows["supernet"] = [
            row if i in timed_at else {**row, "total_s": None, "train_s": None}
            for i, row in enumerate(rows["supernet"])
        ]
    acc = {name: [r["accuracy"] for r in out] for name, out in rows.items()}
    ceiling = rank(acc["seed0"], acc["seed1"])
    inherited = [rank(acc["supernet"], acc[s]) for s in ("seed0", "seed1")]
    standalone_mean = [(a + b) / 2 for a, b in zip(acc["seed0"], acc["seed1"])]
    tau = float(np.mean([r["kendall_tau"] for r in inherited]))
    return {
        "space": {"name": space_name, **SPACES[space_name]},
        "candidates": n,
        "supernet": {
            "epochs": epochs,
            "sandwich": sandwich,
            "seed": SUPERNET_SEED[0],
            "train_s": supernet_s,
            "losses": info["losses"],
            **extra,
        },
        "kendall_tau_inherited_vs_standalone": tau,
        "spearman_rho_inherited_vs_standalone": float(np.mean([r["spearman_rho"] for r in inherited])),
        "vs_mean_of_seeds": rank(acc["supernet"], standalone_mean),
        "kendall_tau_seed_vs_seed": ceiling["kendall_tau"],
        "spearman_rho_seed_vs_seed": ceiling["spearman_rho"],
        "tau_share_of_ceiling": tau / ceiling["kendall_tau"] if ceiling["kendall_tau"] > 0 else float("nan"),
        "mean_accuracy": {name: float(np.mean(a)) for name, a in acc.items()},
        "s_per_candidate": {name: _mean(r["total_s"] for r in out) for name, out in rows.items()},
        "training_s_per_candidate": {name: _mean(r["train_s"] for r in out) for name, out in rows.items()},
        "per_candidate": [{"key": c.key, **{name: acc[name][i] for name in acc}} for i, c in enumerate(candidates)],
        "standalone_timed_here": len(timed) if timed is not None else (0 if reuse is not None else n),
        "standalone_accuracy_change_on_retraining": max(again) if timed is not None else None,
    }


def _supernet_file(supernet_dir: Path, space_name: str, trained: dict) -> Path:
    """Where a supernet trained with these settings, on this run's data and compression, is kept."""
    settings = {**trained, "space": SPACES[space_name], "data": task(IMAGE_SIZE[0], CIFAR10[0])}
    settings["compression"] = compression(space_name)
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=list).encode()).hexdigest()[:16]
    return supernet_dir / f"{space_name}-{digest}.pt"


def stored_supernet(path: Path | None, space_name: str) -> tuple:
    """(checkpoint, training seconds, info) of the supernet kept at `path`; Nones if none is."""
    if path is None or not path.exists():
        return None, None, None
    kept = json.loads(path.with_suffix(".json").read_text())
    print(f"{space_name}: the supernet trained by an earlier run, {path}", flush=True)
    return path.read_bytes(), kept["train_s"], kept["info"]


def store_supernet(path: Path | None, checkpoint: bytes, train_s: float, info: dict) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(checkpoint)
        path.with_suffix(".json").write_text(json.dumps({"train_s": train_s, "info": info}))


def _mean(values) -> float:
    """The mean of the values timed (None: not timed in this run)."""
    return float(np.mean([v for v in values if v is not None]))


def markdown(summary: dict) -> str:
    lines = [
        "# Supernet ranking and cost",
        "",
        f"`{summary['command']}`, on this machine ({summary['workers']} processes), on the "
        f"{data_text(summary['image_size'], summary.get('cifar10'))}; compression "
        f"{COMPRESSION} (and channel_ratio {summary.get('channel_ratios', [0.0])} where the space's supernet trains "
        "it); each candidate scored by the `supernet` evaluator (inherited weights, BatchNorm "
        "recalibrated, compressed) and trained standalone by the `train` evaluator (8 epochs + 2 fine-tune) with "
        "training seeds 0 and 1. Sandwich N: every supernet step trains the largest subnet on the labels, the "
        "smallest and N random ones on its answers (0: one random subnet per step, or with fair sampling FairNAS's set of "
        "subnets that takes every option of every decision once, their gradients added up into one update). Elastic compression: the "
        "supernet trains each step's path compressed as sampled (yes), or its architecture alone, candidates "
        "compressed after inheritance as `train` compresses a float network (no). Each process keeps its "
        "evaluators between candidates, as a run's Ray worker does, and first scores one spare candidate, not "
        "counted (imports, first ONNX sessions, the supernet loaded: once per worker in a run).",
        "",
        "| space | candidates | supernet epochs | supernet seed | sandwich | sampling | elastic compression | tau inherited vs standalone | rho | tau seed vs seed (ceiling) "
        "| share of ceiling | mean accuracy: inherited / seed 0 / seed 1 |",
        "|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    for r in summary["spaces"]:
        m = r["mean_accuracy"]
        lines.append(
            f"| {r['space']['name']} | {r['candidates']} | {r['supernet']['epochs']} | {r['supernet'].get('seed', 0)} "
            f"| {r['supernet'].get('sandwich', 0)} "
            f"| {r['supernet'].get('sampling', 'uniform')} | {'yes' if r['supernet'].get('elastic_compression', True) else 'no'} "
            f"| {r['kendall_tau_inherited_vs_standalone']:.3f} | {r['spearman_rho_inherited_vs_standalone']:.3f} "
            f"| {r['kendall_tau_seed_vs_seed']:.3f} | {r['tau_share_of_ceiling']:.2f} "
            f"| {100 * m['supernet']:.1f} / {100 * m['seed0']:.1f} / {100 * m['seed1']:.1f} % |"
        )
    by_space: dict[str, list[dict]] = {}
    for r in summary["spaces"]:
        by_space.setdefault(r["space"]["name"], []).append(r)
    if any(len(rows) > 1 for rows in by_space.values()):
        lines += [
            "",
            "Over the supernet seeds (each row above one supernet, scored against the same standalone trainings); "
            "supernet vs supernet: the tau between two supernets' inherited accuracies (per pair), to set beside the "
            "seed-to-seed ceiling; their mean: the ranking of the candidates' inherited accuracy averaged over the "
            "supernets (an ensemble, at their summed cost):",
            "",
            "| space | supernet seeds | tau inherited vs standalone: mean +- sd (min) | share of ceiling: mean +- sd (min) "
            "| supernet vs supernet tau | their mean: tau, share |",
            "|---|---:|---|---|---|---|",
        ]
        for name, rows in by_space.items():
            if len(rows) < 2:
                continue
            tau = np.array([r["kendall_tau_inherited_vs_standalone"] for r in rows])
            share = np.array([r["tau_share_of_ceiling"] for r in rows])
            inherited = [[c["supernet"] for c in r["per_candidate"]] for r in rows]
            pairs = [rank(a, b)["kendall_tau"] for i, a in enumerate(inherited) for b in inherited[i + 1 :]]
            first = rows[0]["per_candidate"]
            mean = np.mean(inherited, axis=0).tolist()
            ensemble = np.mean([rank(mean, [c[seed] for c in first])["kendall_tau"] for seed in ("seed0", "seed1")])
            lines.append(
                f"| {name} | {len(rows)} | {tau.mean():.3f} +- {tau.std(ddof=1):.3f} ({tau.min():.3f}) "
                f"| {share.mean():.2f} +- {share.std(ddof=1):.2f} ({share.min():.2f}) "
                f"| {', '.join(f'{p:.2f}' for p in pairs)} "
                f"| {ensemble:.3f}, {ensemble / rows[0]['kendall_tau_seed_vs_seed']:.2f} |"
            )
    lines += [
        "",
        "| space | supernet training s | s per candidate: supernet / train | training part: supernet / train | cheaper per candidate |",
        "|---|---:|---|---|---:|",
    ]
    for rows in by_space.values():  # per candidate, the first seed's supernet: it is timed beside standalone training
        r = rows[0]
        s, t = r["s_per_candidate"], r["training_s_per_candidate"]
        train_s = (s["seed0"] + s["seed1"]) / 2
        trained = ", ".join(f"{row['supernet']['train_s']:.0f}" for row in rows)
        seeds = f" (seeds {', '.join(str(row['supernet'].get('seed', 0)) for row in rows)})" if len(rows) > 1 else ""
        lines.append(
            f"| {r['space']['name']} | {trained}{seeds} | {s['supernet']:.2f} / {train_s:.2f} "
            f"| {t['supernet']:.2f} / {(t['seed0'] + t['seed1']) / 2:.2f} | {train_s / s['supernet']:.1f}x |"
        )
    for r in (rows[0] for rows in by_space.values()):  # the standalone side is the first seed's
        timed = r.get("standalone_timed_here", r["candidates"])
        if timed == 0:
            lines.append(
                f"\n{r['space']['name']}: standalone accuracies and seconds reused from the earlier run, not timed in "
                "this one (so the cost ratio compares two runs; `--time-standalone K` times it side by side)"
            )
        elif timed < r["candidates"]:
            lines.append(
                f"\n{r['space']['name']}: standalone accuracies reused from the earlier run; standalone cost timed on "
                f"{timed} candidates spread over the list, retrained in this run; the supernet's seconds per candidate are its "
                "mean on the same ones"
                + (
                    f" (largest accuracy change on retraining {r['standalone_accuracy_change_on_retraining']:.4f})"
                    if timed
                    else ""
                )
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", default="nb201", help=f"comma-separated, of {list(SPACES)}")
    parser.add_argument("--candidates", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=60, help="supernet training epochs")
    parser.add_argument("--bn-batches", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=0)
    parser.add_argument(
        "--sandwich", type=int, default=0,
        help="random subnets per step beside the largest and smallest, taught by the largest (elastic spaces)",
    )  # fmt: skip
    parser.add_argument(
        "--no-elastic-compression", action="store_true",
        help="train the supernet on architectures alone and compress each inherited subnet after (elastic_compression: false)",
    )  # fmt: skip
    parser.add_argument(
        "--sampling", choices=("uniform", "fair"), default="uniform",
        help="a random path per supernet step, or FairNAS's set of paths that takes every option of every decision",
    )  # fmt: skip
    parser.add_argument(
        "--supernet-dir", type=Path,
        help="keep trained supernets here by their settings; a later run with the same ones scores them again",
    )  # fmt: skip
    parser.add_argument(
        "--supernet-seeds", default="0",
        help="comma-separated supernet training seeds (each also draws its candidates' BatchNorm batches), one "
        "supernet each, scored against the same standalone trainings (seeds 0 and 1)",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, help="resize the digits to this square (default: 8x8 as they are)")
    parser.add_argument(
        "--standalone-from", type=Path,
        help="an earlier run's JSON (same spaces, candidates, image size): its standalone trainings are reused",
    )  # fmt: skip
    parser.add_argument(
        "--time-standalone", type=int, default=0,
        help="with --standalone-from: train this many of the candidates standalone again, timing the ratio in this run",
    )  # fmt: skip
    parser.add_argument(
        "--channel-ratios", default="0",
        help="comma-separated channel_ratio options (structured pruning), on spaces whose supernet trains them (mobilenet)",
    )  # fmt: skip
    parser.add_argument("--cifar10", help="a local cifar-10-batches-py folder: CIFAR-10 instead of the digits")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    IMAGE_SIZE[0], CIFAR10[0] = args.image_size, args.cifar10
    CHANNEL_RATIOS[0] = tuple(float(v) for v in args.channel_ratios.split(","))
    reused = {}
    if args.standalone_from:
        earlier = json.loads(args.standalone_from.read_text())
        if (
            earlier["image_size"] != (32 if args.cifar10 else args.image_size or 8)
            or earlier.get("cifar10") != args.cifar10
        ):
            raise SystemExit(f"{args.standalone_from} was measured on other data or at another image size")
        reused = {r["space"]["name"]: r for r in earlier["spaces"]}
    summary = {
        "image_size": 32 if args.cifar10 else args.image_size or 8,
        "cifar10": args.cifar10,
        "command": "python scripts/bench_supernet.py " + " ".join(sys.argv[1:]),
        "workers": args.workers,
        "channel_ratios": list(CHANNEL_RATIOS[0]),
        "spaces": [],
    }
    for name in args.spaces.split(","):
        reuse = reused.get(name)
        for i, seed in enumerate(int(v) for v in args.supernet_seeds.split(",")):
            SUPERNET_SEED[0] = seed
            row = bench_space(
                name,
                args.candidates,
                args.epochs,
                args.bn_batches,
                args.finetune_steps,
                args.workers,
                reuse,
                args.sandwich if joint(name).space.extremes() is not None else 0,
                args.time_standalone if i == 0 else 0,
                not args.no_elastic_compression,
                args.sampling,
                args.supernet_dir,
            )
            summary["spaces"].append(row)
            reuse = reuse or row  # later seeds' supernets are scored against the same standalone trainings
    print(markdown(summary))
    if args.out:
        args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(summary))


if __name__ == "__main__":
    main()
