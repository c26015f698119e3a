"""GPU against CPU: the same search with `resources.gpus_per_trial: 0.5` and with 0, side by side.

    python scripts/bench_gpu.py --out benchmarks/gpu        # on a machine with a GPU

Two jobs, each run once on CPUs and once with two trainings sharing the GPU (concurrency 2 both
times, the CPU runs one core per evaluation, as Ray gives them):
- `digits`: the 8x8 demo, examples/digits_8px.yaml as it is (tiny networks);
- `conv32`: NAS-Bench-201's own size (16 channels, 5 cells per stage) on 32x32 inputs, the
  digits images upsampled to 32x32x3 and written as a local CIFAR-10 folder (nothing is
  downloaded), random search so that both runs train the same candidates.

Wall time is the whole `cosearch run` (Ray's start included); training seconds are summed from
the stored results. Accuracies are paired by candidate (the same genome, seed and data order on
both runs): the mean GPU - CPU difference with a 95 % t-interval says whether the GPU's results
agree with the CPU's within training noise.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean, stdev

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent


def ci95(diffs: list[float]) -> list[float]:
    """The 95 % t-interval of the mean difference."""
    from scipy import stats

    if len(diffs) < 2:
        return [math.nan, math.nan]
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * stdev(diffs) / math.sqrt(len(diffs))
    return [mean(diffs) - half, mean(diffs) + half]


def digits32_folder(folder: Path) -> Path:
    """The digits images upsampled to 32x32x3, as a CIFAR-10 'cifar-10-batches-py' folder."""
    import torch
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]
    x = torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).reshape(len(x), -1).numpy()
    order = np.random.default_rng(0).permutation(len(pixels))
    test, train = order[:360], order[360:]
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(np.array_split(train, 5), start=1):
        batch = {"data": pixels[part], "labels": digits.target[part].tolist()}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (folder / "test_batch").write_bytes(pickle.dumps({"data": pixels[test], "labels": digits.target[test].tolist()}))
    return folder


def jobs(tmp: Path, quick: bool) -> dict[str, dict]:
    digits = yaml.safe_load((ROOT / "examples" / "digits_8px.yaml").read_text())
    conv32 = {
        "name": "conv32",
        "task": {"dataset": "cifar10", "path": str(digits32_folder(tmp / "digits32"))},
        "search_space": {"name": "nb201", "channels": 16, "cells_per_stage": 5},
        "compression": digits["compression"],
        "strategy": {"name": "random"},
        "objectives": ["accuracy", "latency_ms", "size_kb"],
        "training": {"epochs": 4, "finetune_epochs": 1},
        "resources": {"trials": 6, "concurrency": 2, "seed": 0},
    }
    if quick:  # a smoke test of this script on a machine without a GPU
        digits["resources"]["trials"] = 4
        conv32["resources"]["trials"] = 2
        conv32["training"] = {"epochs": 1, "finetune_epochs": 0}
    return {"digits": digits, "conv32": conv32}


def run(job: dict, side: str, gpus: float, tmp: Path) -> dict:
    from cosearch.controller.store import RunStore

    job = {**job, "resources": {**job["resources"], "gpus_per_trial": gpus}}
    tag = f"{job['name']}-{side}"
    (tmp / f"{tag}.yaml").write_text(yaml.safe_dump(job))
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "cosearch.cli.main", "run", str(tmp / f"{tag}.yaml"), "--run-dir", str(tmp / tag)],
        capture_output=True,
        text=True,
        timeout=3000,
        start_new_session=True,
    )
    wall_s = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"{tag} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    with RunStore(tmp / tag) as store:
        stored = [s.result for s in store.iter_results()]
    ok = [r for r in stored if r.status == "ok"]
    return {
        "gpus_per_trial": gpus,
        "wall_s": wall_s,
        "results": len(stored),
        "ok": len(ok),
        "failed": [r.error for r in stored if r.status == "failed"],
        "train_s": sum(r.timings_s.get("train_s", 0.0) + r.timings_s.get("compress_s", 0.0) for r in ok),
        "devices": sorted({r.measured.get("training", {}).get("device", "?") for r in ok}),
        "accuracy": {r.candidate.key: r.metrics["accuracy"] for r in ok},
    }


def compare(cpu: dict, gpu: dict) -> dict:
    keys = sorted(set(cpu["accuracy"]) & set(gpu["accuracy"]))
    diffs = [gpu["accuracy"][k] - cpu["accuracy"][k] for k in keys]
    return {
        "paired": len(keys),
        "mean_diff": mean(diffs) if diffs else math.nan,
        "ci95": ci95(diffs),
        "max_abs_diff": max((abs(d) for d in diffs), default=math.nan),
        "cpu_mean_accuracy": mean(cpu["accuracy"][k] for k in keys) if keys else math.nan,
        "gpu_mean_accuracy": mean(gpu["accuracy"][k] for k in keys) if keys else math.nan,
        "wall_speedup": cpu["wall_s"] / gpu["wall_s"],
        "train_speedup": cpu["train_s"] / gpu["train_s"] if gpu["train_s"] else math.nan,
    }


def markdown(summary: dict) -> str:
    lines = [
        "# GPU against CPU",
        "",
        f"`{summary['command']}`, on {summary['machine']}. Each job runs once on CPUs and once with "
        "`resources.gpus_per_trial: 0.5` (two trainings share the GPU); concurrency 2 both times. "
        "Wall time is the whole `cosearch run`, Ray's start included; training s is summed over the stored results "
        "(training, compression and fine-tuning). Accuracies are paired by candidate: the same genome, seed and data order.",
        "",
        "| job | gpus_per_trial | trained on | results (ok) | wall s | training s | mean accuracy (paired) |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for name, row in summary["jobs"].items():
        for side in ("cpu", "gpu"):
            r, c = row[side], row["compare"]
            acc = c["cpu_mean_accuracy"] if side == "cpu" else c["gpu_mean_accuracy"]
            lines.append(
                f"| {name} | {r['gpus_per_trial']:g} | {', '.join(r['devices'])} | {r['results']} ({r['ok']}) "
                f"| {r['wall_s']:.1f} | {r['train_s']:.1f} | {100 * acc:.2f} % |"
            )
    lines += [
        "",
        "| job | wall speed-up | training speed-up | paired candidates | GPU - CPU accuracy, mean [95 % CI] | largest single difference |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for name, row in summary["jobs"].items():
        c = row["compare"]
        lines.append(
            f"| {name} | {c['wall_speedup']:.2f}x | {c['train_speedup']:.2f}x | {c['paired']} "
            f"| {100 * c['mean_diff']:+.2f} [{100 * c['ci95'][0]:+.2f}, {100 * c['ci95'][1]:+.2f}] points "
            f"| {100 * c['max_abs_diff']:.2f} points |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="digits,conv32", help="comma-separated: digits, conv32")
    parser.add_argument("--quick", action="store_true", help="a few small trials: a smoke test of the script")
    parser.add_argument("--gpus", type=float, default=0.5, help="gpus_per_trial of the GPU run (0: CPU twice)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args()
    import torch

    machine = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "a machine without a GPU"
    summary: dict = {"command": "python scripts/bench_gpu.py " + " ".join(sys.argv[1:]), "machine": machine, "jobs": {}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        for job_name, job in jobs(tmp, args.quick).items():
            if job_name not in args.jobs.split(","):
                continue
            row = {"cpu": run(job, "cpu", 0.0, tmp), "gpu": run(job, "gpu", args.gpus, tmp)}
            row["compare"] = compare(row["cpu"], row["gpu"])
            summary["jobs"][job_name] = row
            print(json.dumps({job_name: row["compare"]}), flush=True)
            if args.out:  # after each job, so that a run stopped midway keeps what it measured
                args.out.with_suffix(".json").write_text(json.dumps(summary, indent=1) + "\n")
                args.out.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
