"""Conv+BN folding by onnxscript's rewriter against the hand-written fold it replaced: same files?

    python scripts/compare_bn_fold.py [--against c608ad0] [--candidates 8] [--input-shape 3,32,32] [--out benchmarks]

For each space, random candidates (weight bits 4/8/32, activation bits 8/32, sparsity, channel
pruning) are built with BatchNorm statistics set away from the identity, compressed and baked, then
deployed twice: with `cosearch.hardware.qdq.fold_batch_norms` of this checkout and with the one at
git revision AGAINST. Reported per space: whether the op counts match, the largest output difference
between the two files, their sizes, and their latencies measured interleaved (batch 1, 1 thread,
lowest median of 100 runs over 10 rounds, alternating which goes first). Writes OUT/bn_fold.json and OUT/bn_fold.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import types
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np

SPACES = ("nb201", "darts", "enas", "mobilenet")


def old_fold(revision: str):
    """`fold_batch_norms` as it was at `revision` (that module, executed on its own)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:cosearch/hardware/qdq.py"], capture_output=True, text=True, check=True
    ).stdout
    module = types.ModuleType("qdq_at_revision")
    exec(compile(source, f"{revision}:cosearch/hardware/qdq.py", "exec"), module.__dict__)
    return module.fold_batch_norms


def deployments(candidate, space, input_shape, fold_then):
    import torch

    from cosearch.compressors import bake, compress, reshape
    from cosearch.hardware import qdq

    torch.manual_seed(0)
    model = reshape(space.build(candidate.arch, input_shape, 10), candidate.policy, input_shape).eval()
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # statistics a trained network would have, so folding changes weights
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    plain = bake(compress(model, candidate.policy))
    ours = qdq.deployment(plain, candidate.policy, input_shape)
    with mock.patch.object(qdq, "fold_batch_norms", fold_then):
        theirs = qdq.deployment(plain, candidate.policy, input_shape)
    return ours, theirs


def ops(model_bytes: bytes) -> Counter:
    """Op counts, Identity aside: constant folding turns the exporter's shared-buffer Identity nodes
    into initializers, which changes no computation."""
    import onnx

    return Counter(node.op_type for node in onnx.load_from_string(model_bytes).graph.node if node.op_type != "Identity")


def identities(model_bytes: bytes) -> int:
    import onnx

    return sum(node.op_type == "Identity" for node in onnx.load_from_string(model_bytes).graph.node)


def bench_space(name, input_shape, candidates, fold_then) -> dict:
    from cosearch import build
    from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency, run_onnx
    from cosearch.job import spec_from_dict

    job = spec_from_dict(
        {
            "search_space": {"name": name},
            "compression": {
                "weight_bits": [4, 8, 32],
                "activation_bits": [8, 32],
                "sparsity": [0.0, 0.5],
                "channel_ratio": [0.0, 0.5],
            },
        }
    )
    joint = build.make_joint_space(job)
    rng = np.random.default_rng(0)
    x = np.random.default_rng(2).standard_normal((16, *input_shape)).astype(np.float32)
    settings = LatencySettings()
    rows = []
    for _ in range(candidates):
        candidate = joint.decode(joint.sample(rng))
        ours, theirs = deployments(candidate, joint.space, input_shape, fold_then)
        a, b = run_onnx(ours, x), run_onnx(theirs, x)
        latency_ms: dict[str, list[float]] = {"onnxscript": [], "hand_written": []}
        files = {"onnxscript": ours, "hand_written": theirs}
        for round_index in range(10):  # alternate which file goes first
            for which in sorted(files, reverse=round_index % 2 == 1):
                latency_ms[which].append(measure_latency(files[which], input_shape, settings)["median_ms"])
        rows.append(
            {
                "summary": candidate.policy.summary(),
                "same_ops": ops(ours) == ops(theirs),
                "batch_norms_left": ops(ours).get("BatchNormalization", 0),
                "batch_norms_left_hand_written": ops(theirs).get("BatchNormalization", 0),
                "same_argmax": float((a.argmax(axis=1) == b.argmax(axis=1)).mean()),
                "identity_nodes_onnxscript": identities(ours),
                "identity_nodes_hand_written": identities(theirs),
                "max_abs_output_diff": float(np.abs(a - b).max()),
                "output_scale": float(np.abs(b).max()),
                "bytes_onnxscript": len(ours),
                "bytes_hand_written": len(theirs),
                "latency_ms_onnxscript": min(latency_ms["onnxscript"]),
                "latency_ms_hand_written": min(latency_ms["hand_written"]),
            }
        )
    ratios = [r["latency_ms_onnxscript"] / r["latency_ms_hand_written"] for r in rows]
    return {
        "space": name,
        "candidates": rows,
        "all_same_ops": all(r["same_ops"] for r in rows),
        "batch_norms_left_onnxscript_hand_written": [
            sum(r["batch_norms_left"] for r in rows),
            sum(r["batch_norms_left_hand_written"] for r in rows),
        ],
        "same_argmax_min": min(r["same_argmax"] for r in rows),
        "identity_nodes_onnxscript_hand_written": [
            sum(r["identity_nodes_onnxscript"] for r in rows),
            sum(r["identity_nodes_hand_written"] for r in rows),
        ],
        "max_abs_output_diff": max(r["max_abs_output_diff"] for r in rows),
        "output_scale_at_max_diff": max(rows, key=lambda r: r["max_abs_output_diff"])["output_scale"],
        "bytes_ratio_max": max(r["bytes_onnxscript"] / r["bytes_hand_written"] for r in rows),
        "latency_ratio_p5_p50_p95": [float(v) for v in np.percentile(ratios, [5, 50, 95])],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", default="c608ad0", help="git revision with the hand-written fold")
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    input_shape = tuple(int(v) for v in args.input_shape.split(","))
    fold_then = old_fold(args.against)
    results = [bench_space(name, input_shape, args.candidates, fold_then) for name in SPACES]
    command = "python scripts/compare_bn_fold.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bn_fold.json").write_text(json.dumps({"command": command, "spaces": results}, indent=2) + "\n")
    lines = [
        "# Conv+BN folding: onnxscript's rewriter vs the hand-written fold",
        "",
        f"`{command.strip()}`",
        "",
        "Pairs are onnxscript / hand-written; same ops ignores Identity nodes (counted separately). Outputs on",
        "16 seeded random inputs; with quantized activations a float difference of 1e-7 can move a value",
        "across a rounding step, so argmax agreement is shown beside the largest logit difference.",
        "",
        "| space | candidates | same ops | BatchNorms left | Identity nodes | max abs output diff (output scale) "
        "| same argmax, min | max size ratio | latency ratio p5 / p50 / p95 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p5, p50, p95 = r["latency_ratio_p5_p50_p95"]
        lines.append(
            f"| {r['space']} | {len(r['candidates'])} | {r['all_same_ops']} "
            f"| {r['batch_norms_left_onnxscript_hand_written'][0]} / {r['batch_norms_left_onnxscript_hand_written'][1]} "
            f"| {r['identity_nodes_onnxscript_hand_written'][0]} / {r['identity_nodes_onnxscript_hand_written'][1]} "
            f"| {r['max_abs_output_diff']:.2e} ({r['output_scale_at_max_diff']:.2f}) | {r['same_argmax_min']:.3f} "
            f"| {r['bytes_ratio_max']:.4f} | {p5:.3f} / {p50:.3f} / {p95:.3f} |"
        )
    (out / "bn_fold.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
