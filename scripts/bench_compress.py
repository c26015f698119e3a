"""Compression methods side by side on one fixed architecture, each measured as the file it deploys as.

    python scripts/bench_compress.py [--cifar10 PATH] [--channels 64] [--epochs 15] [--out benchmarks]

One NB201 network is trained once in float; every row starts from those weights (the distilled
student from scratch) and is measured as its deployed ONNX file: accuracy on the test split run
in ONNX Runtime, file size on disk, latency (ONNX Runtime CPU, batch 1, 1 thread; median and p90
of 100 runs, default session options as users load a file; the median of 9 interleaved rounds through
all rows), beside ONNX Runtime's own quantize_static of the fp32 file (ours / ORT) and, for our
compressed rows, the graph the search itself timed (calibrated on noise before training); ratios
are of neighbours in each round (ORT's file, the row's, its search graph). Rows:

  fp32                      the trained float network
  ort quantize_static       ONNX Runtime's own PTQ (QDQ, per-channel int8 weights, uint8
                            activations, reduce_range=True) and, for the record, with its defaults
  int8 PTQ                  ours: per-channel int8 weights, 8-bit activations calibrated (no training)
  int8 PTQ, 7-bit weights   the same at weight_bits 7: what ORT's reduce_range stores
  int8 weights only         ours: per-channel int8 weights, float activations (model.onnx: float32 values on
                            the grid; the compact file: int8 + DequantizeLinear, loaded with disable_quant_qdq)
  mixed 4/8 QAT             ours: cell convs 4-bit, the rest 8-bit, 8-bit activations, QAT fine-tune
  structured -50 %          half the channels removed (Torch-Pruning, L1), fine-tuned
  low-rank 0.5              1x1 convs and the classifier as SVD factors at rank ratio 0.5, fine-tuned
  student alone / distilled a narrow network (4 channels) trained alone and with the fp32 network as teacher,
                            on the training images and on their shifted views (the teacher labels each view)

Writes OUT/compress.json and OUT/compress.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def ort_quantize_static(float_bytes: bytes, images: np.ndarray, reduce_range: bool) -> bytes:
    """ONNX Runtime's post-training static quantization of a float file (QDQ, min-max calibration)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from cosearch.hardware.onnx_runtime import INPUT_NAME

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{INPUT_NAME: images[i : i + 1]} for i in range(len(images))])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, target = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "int8.onnx")
        Path(source).write_bytes(float_bytes)
        quantize_static(
            source,
            target,
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        return Path(target).read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cifar10", help="a local cifar-10-batches-py folder (default: the built-in digits)")
    parser.add_argument("--channels", type=int, default=64, help="stem width of the fixed NB201 network")
    parser.add_argument("--cells", type=int, default=2, help="cells per stage")
    parser.add_argument("--epochs", type=int, default=15, help="float training epochs (the student's too)")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument(
        "--student-channels",
        type=int,
        default=4,
        help="stem width of the distilled student (the fp32 network is its teacher)",
    )
    parser.add_argument(
        "--shift-px", type=int, default=1, help="students also train on the images shifted by up to this many pixels"
    )
    parser.add_argument("--view-epochs", type=int, default=5, help="the students' epochs over the shifted views")
    parser.add_argument(
        "--student-seeds", type=int, default=5, help="seeds for the student alone and distilled (averaged)"
    )
    parser.add_argument(
        "--calibration", default="percentile", help="activation calibration of our PTQ: minmax, percentile, mse or kl"
    )
    parser.add_argument(
        "--rounds", type=int, default=9, help="interleaved latency rounds through all rows; their median counts"
    )
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    import torch

    from cosearch.compressors import bake, compression_slots, global_magnitude_policy, size_bytes
    from cosearch.core.candidate import Candidate, LayerPolicy, Policy
    from cosearch.evaluators.data import shifted_views
    from cosearch.evaluators.train import (
        CompressionSettings,
        DataSettings,
        TrainEvaluator,
        TrainingSettings,
        accuracy,
        predict,
        train_epochs,
    )
    from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE, LatencySettings, measure_latency, run_onnx
    from cosearch.hardware.qdq import compact, deployment, int8_weights_note
    from cosearch.search_spaces import SEARCH_SPACES
    from cosearch.search_spaces.nb201 import edge_name, parse_arch_str

    torch.set_num_threads(1)
    data_settings = DataSettings(dataset="cifar10", path=args.cifar10) if args.cifar10 else DataSettings()
    data = data_settings.load()
    shape, classes = data.input_shape, data.num_classes
    training = TrainingSettings(epochs=args.epochs, finetune_epochs=args.finetune_epochs)
    space = SEARCH_SPACES.create("nb201", channels=args.channels, cells_per_stage=args.cells)
    arch = {"cell": ARCH}
    rows: list[dict] = []
    deployed: dict[str, tuple[bytes, dict[str, str]]] = {}  # row -> file, session config ({}: defaults)
    searched: dict[str, bytes] = {}  # row -> the graph the search would time for it (before training)
    models: dict[str, tuple] = {}  # row -> baked model, policy

    def by_name(name: str) -> dict:
        return next(r for r in rows if r["method"] == name)

    def record(name: str, onnx_bytes: bytes, how: str, started: float, config: dict | None = None, **extra) -> None:
        test_accuracy = accuracy(run_onnx(onnx_bytes, data.test.x, config=config), data.test.y)
        row = {
            "method": name,
            "test_accuracy": test_accuracy,
            "size_kb": len(onnx_bytes) / 1024,
            "how": how,
            "seconds": round(time.perf_counter() - started, 1),
            **extra,
        }
        rows.append(row)
        deployed[name] = (onnx_bytes, config or {})
        print(json.dumps(row), flush=True)

    # fp32: trained once; every compressed row starts from these weights.
    start = time.perf_counter()
    torch.manual_seed(0)
    base = space.build(arch, shape, classes)
    train_epochs(base, data.train, args.epochs, training.learning_rate, training, seed=0)
    base_bytes = deployment(bake(base), Policy(), shape)
    record(
        "fp32",
        base_bytes,
        f"NB201 {ARCH}, {args.channels} channels, {args.cells} cells per stage, {args.epochs} epochs",
        start,
        accounted_kb=size_bytes(base, Policy()) / 1024,
    )
    slots = sorted(compression_slots(base))
    cell_slots = [s for s in slots if s.startswith("stage")]

    calibration_images = data.train.x[:256]
    for reduce_range in (True, False):
        start = time.perf_counter()
        quantized = ort_quantize_static(base_bytes, calibration_images, reduce_range)
        name = "ort quantize_static" + ("" if reduce_range else " (defaults, reduce_range=False)")
        record(
            name,
            quantized,
            "onnxruntime.quantization.quantize_static: QDQ, per-channel, U8S8, min-max on 256 training images",
            start,
            accounted_kb=len(quantized) / 1024,
        )

    def compressed_row(
        name: str, policy: Policy, finetune_epochs: int, how: str, calibration: str = args.calibration
    ) -> None:
        start = time.perf_counter()
        evaluator = TrainEvaluator(
            space,
            data_settings,
            TrainingSettings(epochs=0, finetune_epochs=finetune_epochs),
            compression=CompressionSettings(calibration=calibration),
        )
        model, _, _ = evaluator.build_trained(Candidate(arch, policy), copy.deepcopy(base))
        plain = bake(model)
        # as `cosearch export` writes it: ranges calibrated on the images the evaluator calibrated on
        onnx_bytes = deployment(plain, policy, shape, images=calibration_images, calibration=calibration)
        searched[name] = deployment(plain, policy, shape)
        models[name] = (plain, policy)
        record(
            name,
            onnx_bytes,
            how,
            start,
            policy=policy.summary(),
            pytorch_accuracy=accuracy(predict(model, data.test.x), data.test.y),
            accounted_kb=size_bytes(plain, policy) / 1024,
        )

    w8a8 = Policy({s: LayerPolicy(weight_bits=8, activation_bits=8) for s in slots})
    compressed_row(
        "int8 PTQ",
        w8a8,
        0,
        f"per-channel symmetric int8 weights, 8-bit activations ({args.calibration} calibration on 256 training images), no training",
    )
    compressed_row(
        "int8 PTQ, 7-bit weights",
        Policy({s: LayerPolicy(weight_bits=7, activation_bits=8) for s in slots}),
        0,
        f"as int8 PTQ at weight_bits 7, the precision ORT's reduce_range keeps ({args.calibration} calibration), no training",
    )
    compressed_row(
        "int8 weights only",
        Policy({s: LayerPolicy(weight_bits=8) for s in slots}),
        0,
        "per-channel symmetric int8 weights, float activations, no training",
    )
    weight_only, weight_only_policy = models["int8 weights only"]
    start = time.perf_counter()
    small = compact(deployed["int8 weights only"][0], weight_only, weight_only_policy)
    record(
        "int8 weights only, compact file",
        small,
        "the same model as model.compact.onnx: int8 + DequantizeLinear, session.disable_quant_qdq=1",
        start,
        config=FOLD_WEIGHT_DEQUANTIZE,
        policy=weight_only_policy.summary(),
        accounted_kb=size_bytes(weight_only, weight_only_policy) / 1024,
    )
    mixed = Policy({s: LayerPolicy(weight_bits=4 if s in cell_slots else 8, activation_bits=8) for s in slots})
    compressed_row(
        "mixed 4/8 QAT",
        mixed,
        args.finetune_epochs,
        f"{len(cell_slots)} cell convs 4-bit, {len(slots) - len(cell_slots)} other layers 8-bit, 8-bit activations, {args.finetune_epochs} epochs QAT (STE)",
    )
    compressed_row(
        "structured -50 %",
        Policy(channel_ratio=0.5),
        args.finetune_epochs,
        f"50 % of channels removed (Torch-Pruning, L1 importance), {args.finetune_epochs} epochs fine-tune",
    )
    sparse = global_magnitude_policy(base, Policy(), 0.7)
    compressed_row(
        "magnitude -70 % global",
        sparse,
        args.finetune_epochs,
        f"the smallest 70 % of all weights removed (one threshold; per layer {min(lp.sparsity for lp in sparse.layers.values()):.0%}-{max(lp.sparsity for lp in sparse.layers.values()):.0%}), {args.finetune_epochs} epochs fine-tune; the file stores zeros densely",
    )
    compressed_row(
        "hashed 1/4",
        Policy({s: LayerPolicy(hash_ratio=0.25) for s in cell_slots}),
        args.finetune_epochs,
        f"{len(cell_slots)} cell convs share 1 bucket per 4 weights (HashedNets), {args.finetune_epochs} epochs fine-tune; the file stores the expanded weights",
    )
    one_by_one = {edge_name(i, j) for (i, j), op in parse_arch_str(ARCH).items() if op == "nor_conv_1x1"}
    low_rank_slots = [
        s
        for s in slots
        if s == "classifier" or s.endswith("shortcut.conv") or (s in cell_slots and s.split(".")[2] in one_by_one)
    ]
    low_rank = Policy({s: LayerPolicy(rank_ratio=0.5) for s in low_rank_slots})
    compressed_row(
        "low-rank 0.5",
        low_rank,
        args.finetune_epochs,
        f"{len(low_rank_slots)} 1x1 convs and the classifier as SVD factors at rank ratio 0.5, {args.finetune_epochs} epochs fine-tune",
    )

    # Distillation: a narrow student, alone and with the fp32 network as teacher (same seeds), on
    # the training images and on their shifted views (the teacher labels every view; same epochs
    # for alone and distilled, so the pair differs only in the labels).
    student_space = SEARCH_SPACES.create("nb201", channels=args.student_channels, cells_per_stage=args.cells)
    for shift_px, epochs, suffix in ((0, args.epochs, ""), (args.shift_px, args.view_epochs, ", shifted views")):
        views = (2 * shift_px + 1) ** 2
        teacher_logits = predict(base, shifted_views(data.train, shift_px).x)
        for alpha, name in ((0.0, "student alone"), (0.9, "student distilled")):
            start = time.perf_counter()
            accuracies, files = [], []
            for seed in range(args.student_seeds):
                evaluator = TrainEvaluator(
                    student_space,
                    data_settings,
                    TrainingSettings(epochs=epochs, finetune_epochs=0, seed=seed, shift_px=shift_px),
                    teacher_logits=teacher_logits,
                    temperature=4.0,
                )
                model, _, _ = evaluator.build_trained(Candidate(arch, Policy(distill_alpha=alpha)))
                onnx_bytes = deployment(bake(model), Policy(), shape)
                accuracies.append(accuracy(run_onnx(onnx_bytes, data.test.x), data.test.y))
                files.append(onnx_bytes)
            how = f"NB201 same cell, {args.student_channels} channels, {epochs} epochs"
            how += f" over {views} views (shifts up to {shift_px} px)" if shift_px else ""
            how += f", alpha {alpha}, T 4, teacher fp32" if alpha else ""
            record(
                name + suffix,
                files[0],
                how,
                start,
                seed_accuracies=accuracies,
                accounted_kb=size_bytes(model, Policy()) / 1024,
            )
            rows[-1]["test_accuracy"] = float(np.mean(accuracies))  # the mean over seeds; the file is seed 0's

    settings = LatencySettings()
    # Each row's file between ORT's and the graph the search timed for it: a ratio compares neighbours,
    # which share the machine's state (the 24 MB float files move +-20 % between rounds here).
    files = []
    for name, (onnx_bytes, config) in deployed.items():
        files += [(("ort", name), *deployed["ort quantize_static"]), (("file", name), onnx_bytes, config)]
        files += [(("search", name), searched[name], {})] if name in searched else []
    rounds = [[measure_latency(b, shape, settings, c) for _, b, c in files] for _ in range(args.rounds)]
    at = {key: i for i, (key, _, _) in enumerate(files)}
    for row in rows:
        i = at[("file", row["method"])]
        row.update(
            latency_median_ms=float(np.median([r[i]["median_ms"] for r in rounds])),
            latency_p90_ms=float(np.median([r[i]["p90_ms"] for r in rounds])),
            latency_round_medians_ms=[r[i]["median_ms"] for r in rounds],
        )

    def paired(i: int, j: int) -> tuple[float, list[float]]:
        """File i over file j: the median of each round's ratio (drift between rounds cancels) and its quartiles."""
        ratios = [r[i]["median_ms"] / r[j]["median_ms"] for r in rounds]
        return float(np.median(ratios)), [float(q) for q in np.percentile(ratios, [25, 75])]

    for name in searched:
        row, j = by_name(name), at[("search", name)]
        row["search_graph_latency_ms"] = float(np.median([r[j]["median_ms"] for r in rounds]))
        row["x_search"], row["x_search_quartiles"] = paired(at[("file", name)], j)
    for row in rows:
        row["x_ort_latency"], row["x_ort_quartiles"] = paired(at[("file", row["method"])], at[("ort", row["method"])])

    by = {r["method"]: r for r in rows}
    fp32 = by["fp32"]

    def closes_half_the_gap(suffix: str) -> bool:
        teacher, alone, distilled = (
            fp32["test_accuracy"],
            by["student alone" + suffix]["test_accuracy"],
            by["student distilled" + suffix]["test_accuracy"],
        )
        return teacher > alone and (distilled - alone) >= 0.5 * (teacher - alone)

    def at_most_ort(name: str) -> str:
        """Met: the paired median ratio <= 1; within noise: above 1, but at or below 1 in a quarter of the rounds."""
        row = by[name]
        ratio, (low, high) = row["x_ort_latency"], row["x_ort_quartiles"]
        if ratio <= 1.0:
            return f"met ({ratio:.3f}x, quartiles {low:.3f}-{high:.3f})"
        return f"{'met within noise' if low <= 1.0 else 'NOT met'} ({ratio:.3f}x, quartiles {low:.3f}-{high:.3f})"

    ort = by["ort quantize_static"]
    near_search = [abs(r["x_search"] - 1) <= 0.10 for r in rows if "x_search" in r]
    goals = {
        "int8 PTQ at most 1.0x ORT quantize_static's latency": at_most_ort("int8 PTQ"),
        "int8 PTQ, 7-bit weights at most 1.0x ORT quantize_static's latency": at_most_ort("int8 PTQ, 7-bit weights"),
        "mixed 4/8 QAT at most 1.0x ORT quantize_static's latency": at_most_ort("mixed 4/8 QAT"),
        "int8 PTQ no less accurate than ORT quantize_static": by["int8 PTQ"]["test_accuracy"] >= ort["test_accuracy"],
        "every compressed row within 10 % of the latency the search timed (paired per round)": all(near_search),
        "int8 PTQ loses <= 0.5 points": (fp32["test_accuracy"] - by["int8 PTQ"]["test_accuracy"]) * 100 <= 0.5,
        "int8 PTQ >= 3.9x smaller": fp32["size_kb"] / by["int8 PTQ"]["size_kb"] >= 3.9,
        "mixed 4/8 QAT loses <= 1 point": (fp32["test_accuracy"] - by["mixed 4/8 QAT"]["test_accuracy"]) * 100 <= 1.0,
        "structured -50 % >= 1.6x faster": fp32["latency_median_ms"] / by["structured -50 %"]["latency_median_ms"]
        >= 1.6,
        "distillation closes >= half the gap (training images)": closes_half_the_gap(""),
        f"distillation closes >= half the gap (shifted views, {args.shift_px} px)": closes_half_the_gap(
            ", shifted views"
        ),
    }
    command = "python scripts/bench_compress.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": command,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "dataset": data.name,
        "test_images": len(data.test.y),
        "rows": rows,
        "goals": goals,
    }
    (out / "compress.json").write_text(json.dumps(summary, indent=1))
    lines = [
        "# Compression benchmark",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}; {data.name}, {len(data.test.y)} test images; {int8_weights_note()}.",
        "",
        "Every row is its deployed ONNX file: accuracy run in ONNX Runtime on the test split, size on disk, latency in ONNX Runtime",
        f'(CPU, batch 1, 1 thread, 100 runs, default session options; the median of {args.rounds} interleaved rounds). "x ORT" is the latency over',
        'ORT quantize_static\'s; "search ms" is the graph the search timed for that row (before training, calibrated on noise),',
        '"x search" the file over it. Each ratio is the median over rounds of that round\'s ratio of neighbours',
        "(every row's file is measured between ORT's and its search graph).",
        "The students' accuracy is the mean of",
        f'{args.student_seeds} seeds. "accounted KB" is `size_kb` as the search counts it (non-zeros x bits, buckets, scales); ORT\'s',
        "own rows have no policy and show their file size there.",
        "",
        "| method | test accuracy | vs fp32 (points) | file KB | x smaller | accounted KB | latency median ms | p90 ms | x faster | x ORT | search ms | x search |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['test_accuracy']:.2%} | {(r['test_accuracy'] - fp32['test_accuracy']) * 100:+.2f} | {r['size_kb']:.1f} "
            f"| {fp32['size_kb'] / r['size_kb']:.2f} | {r['accounted_kb']:.1f} | {r['latency_median_ms']:.3f} | {r['latency_p90_ms']:.3f} | {fp32['latency_median_ms'] / r['latency_median_ms']:.2f} "
            f"| {r['x_ort_latency']:.3f} | {r['search_graph_latency_ms'] if 'search_graph_latency_ms' in r else float('nan'):.3f} "
            f"| {r['x_search'] if 'x_search' in r else float('nan'):.3f} |"
        )
    lines += ["", "Goals (from the issue):", ""] + [
        f"- {goal}: {ok if isinstance(ok, str) else 'met' if ok else 'NOT met'}" for goal, ok in goals.items()
    ]
    lines += ["", "What each row is:", ""] + [f"- {r['method']}: {r['how']}" for r in rows]
    (out / "compress.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
