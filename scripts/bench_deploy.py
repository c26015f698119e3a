"""Deployed files per search space: ours beside ONNX Runtime's quantize_static, and beside what the search timed.

    python scripts/bench_deploy.py [--epochs 5] [--rounds 5] [--out benchmarks]

For one network per space (the first the seeded sampler draws, trained `--epochs` in float on
digits), each policy mix is compressed from those weights (no fine-tuning) and deployed twice:
as `cosearch export` writes it (ranges calibrated on 256 training images) and as the search
timed it before training (calibrated on noise). Every file is timed with ONNX Runtime's default
session options (CPU, batch 1, 1 thread, 100 runs), all files of a space interleaved, `--rounds`
times; the median of the rounds' medians counts. ORT's row is `quantize_static` (QDQ,
per-channel, U8S8, reduce_range, min-max on the same 256 images) of the fp32 file.

Writes OUT/deploy.json and OUT/deploy.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import shlex
import sys
from pathlib import Path

import numpy as np

SPACES = {
    "nb201": {"channels": 32, "cells_per_stage": 1},
    "darts": {"channels": 16},
    "enas": {"channels": 16},
    "mobilenet": {},
}


def paired(rounds: list[list[float]], order: list, key, base) -> float:
    """The median over rounds of each round's latency ratio key / base: drift between rounds cancels."""
    return float(np.median([r[order.index(key)] / r[order.index(base)] for r in rounds]))


def mcnemar_p(gained: int, lost: int) -> float:
    """Exact two-sided McNemar p-value of `gained` against `lost` discordant images (binomial, p = 1/2)."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5, help="float training epochs of each space's network")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved latency rounds; their median counts")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_compress import ort_quantize_static

    from cosearch.compressors import bake, compression_slots
    from cosearch.core.candidate import Candidate, LayerPolicy, Policy
    from cosearch.evaluators.train import (
        CompressionSettings,
        DataSettings,
        TrainEvaluator,
        TrainingSettings,
        accuracy,
        train_epochs,
    )
    from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency, run_onnx
    from cosearch.hardware.qdq import deployment, int8_weights_note
    from cosearch.search_spaces import SEARCH_SPACES, JointSpace

    torch.set_num_threads(1)
    data_settings = DataSettings()
    data = data_settings.load()
    shape, classes = data.input_shape, data.num_classes
    images = data.train.x[:256]
    training = TrainingSettings(epochs=args.epochs)
    settings = LatencySettings()
    results = []
    for space_name, params in SPACES.items():
        space = SEARCH_SPACES.create(space_name, **params)
        architectures = JointSpace(space, weight_bits=[32], sparsity=[0.0])
        arch = architectures.decode(architectures.sample(np.random.default_rng(0))).arch  # the sampler's first
        torch.manual_seed(0)
        base = space.build(arch, shape, classes)
        train_epochs(base, data.train, args.epochs, training.learning_rate, training, seed=0)
        slots = sorted(compression_slots(base))
        mixes = {
            "int8 PTQ": {s: LayerPolicy(weight_bits=8, activation_bits=8) for s in slots},
            "int8 PTQ, 7-bit weights": {s: LayerPolicy(weight_bits=7, activation_bits=8) for s in slots},
            "mixed 4/8, 8-bit activations": {
                s: LayerPolicy(weight_bits=4 if i % 2 else 8, activation_bits=8) for i, s in enumerate(slots)
            },
            "int8 weights only": {s: LayerPolicy(weight_bits=8) for s in slots},
            "4-bit weights, sparsity 0.5": {s: LayerPolicy(weight_bits=4, sparsity=0.5) for s in slots},
            "channels -50 %": None,
            "low-rank 0.5": {s: LayerPolicy(rank_ratio=0.5) for s in slots},
            "hashed 1/4": {s: LayerPolicy(hash_ratio=0.25) for s in slots},
        }
        files: dict[str, tuple[bytes, bytes | None]] = {}  # row -> (exported, searched)
        rows: dict[str, dict] = {}
        fp32 = deployment(bake(base), Policy(), shape)
        files["fp32"] = (fp32, None)
        files["ort quantize_static"] = (ort_quantize_static(fp32, images, reduce_range=True), None)
        for name, layers in mixes.items():
            policy = Policy(channel_ratio=0.5) if layers is None else Policy(layers)
            evaluator = TrainEvaluator(
                space, data_settings, TrainingSettings(epochs=0, finetune_epochs=0), compression=CompressionSettings()
            )
            try:
                model, _, _ = evaluator.build_trained(Candidate(arch, policy), copy.deepcopy(base))
                plain = bake(model)
                files[name] = (deployment(plain, policy, shape, images=images), deployment(plain, policy, shape))
            except Exception as error:  # noqa: BLE001 - a mix a space cannot take is reported, not fatal
                rows[name] = {"row": name, "error": f"{type(error).__name__}: {error}"}
        order = [(name, which) for name, pair in files.items() for which, f in zip((0, 1), pair) if f is not None]
        rounds = [
            [measure_latency(files[name][which], shape, settings)["median_ms"] for name, which in order]
            for _ in range(args.rounds)
        ]
        latency = {key: float(np.median([r[i] for r in rounds])) for i, key in enumerate(order)}

        right = {
            name: run_onnx(exported, data.test.x).argmax(1) == data.test.y for name, (exported, _) in files.items()
        }
        for name, (exported, searched) in files.items():
            gained, lost = (
                int((right[name] & ~right["ort quantize_static"]).sum()),
                int((~right[name] & right["ort quantize_static"]).sum()),
            )
            row = {
                "row": name,
                "test_accuracy": accuracy(run_onnx(exported, data.test.x), data.test.y),
                # test images this file classifies right and ORT's wrong, and the reverse, with McNemar's
                # exact two-sided p: is an accuracy gap between the two files more than chance?
                "vs_ort_images": [gained, lost],
                "vs_ort_p": mcnemar_p(gained, lost),
                "latency_ms": latency[(name, 0)],
                "x_ort": paired(rounds, order, (name, 0), ("ort quantize_static", 0)),
                "file_kb": len(exported) / 1024,
            }
            if searched is not None:
                row["search_latency_ms"] = latency[(name, 1)]
                row["x_search"] = paired(rounds, order, (name, 0), (name, 1))
            rows[name] = row
        results.append({"space": space_name, "params": params, "arch": dict(arch), "rows": list(rows.values())})
        print(json.dumps(results[-1]), flush=True)

    command = "python scripts/bench_deploy.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.json").write_text(
        json.dumps({"command": command, "machine": platform.machine(), "spaces": results}, indent=1)
    )
    lines = [
        "# Deployed files per search space",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}; digits, {len(data.test.y)} test images; {int8_weights_note()}.",
        "",
        f"One network per space, trained {args.epochs} epochs in float; each row compressed from those weights without",
        "fine-tuning. Latency: ONNX Runtime default session options, batch 1, 1 thread, 100 runs, the median of",
        f'{args.rounds} interleaved rounds. "x ORT": over ORT quantize_static (reduce_range) of the fp32 file; "search ms":',
        'the same model deployed as the search timed it before training (ranges from noise); "x search": file / search.',
        'Both ratios are the median over rounds of that round\'s ratio. "vs ORT": test images this file classifies',
        "right and ORT's file wrong / the reverse, and McNemar's exact p (below 0.05: the accuracy gap is more than chance).",
        "",
    ]
    for space in results:
        lines += [
            f"## {space['space']} {space['params']}",
            "",
            "| row | test accuracy | vs ORT (+/-, p) | file KB | latency ms | x ORT | search ms | x search |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in space["rows"]:
            if "error" in r:
                lines.append(f"| {r['row']} | {r['error']} | | | | | | |")
                continue
            search = f"{r['search_latency_ms']:.4f} | {r['x_search']:.2f}" if "x_search" in r else " | "
            lines.append(
                f"| {r['row']} | {r['test_accuracy']:.2%} | +{r['vs_ort_images'][0]} / -{r['vs_ort_images'][1]}, {r['vs_ort_p']:.2f} | {r['file_kb']:.1f} | {r['latency_ms']:.4f} | {r['x_ort']:.2f} | {search} |"
            )
        lines.append("")
    (out / "deploy.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
