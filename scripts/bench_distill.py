"""Distillation, paired: each seed trains the same student from the same initial weights in the same data
order twice, alone and with the teacher's soft labels, so the difference is the teacher's alone.

    python scripts/bench_distill.py [--seeds 10] [--epochs 15] [--view-epochs 5] [--configs 0.9:4 0.5:2]
        [--settings images views compressed] [--image-size 16 | --cifar10 PATH] [--out benchmarks]

The teacher is NB201 (bench_compress's cell) at `--teacher-channels`, trained `--epochs` on the
digits; the student the same cell at `--student-channels`. Rows: on the training images, on
their shifted views (`--shift-px`, the teacher labels every view), and `compressed`: the student
trained alone on the images, then compressed (`--weight-bits`, `--activation-bits` on every layer,
through the search's own compress + calibrate path) and fine-tuned `--finetune-epochs` over the
shifted views alone or distilled, from the same compressed weights in the same order: how much of a
low-bit student's accuracy the teacher helps recover. Reports every seed's test
accuracy (PyTorch, 360 test images), the mean paired difference with its 95 % confidence
interval (Student's t), and the share of the student-teacher gap it closes, per distillation
config (`--configs ALPHA:T[:WARMUP] ...`, each paired with the same runs alone; WARMUP the share of
a from-scratch training over which alpha rises from 0, the library's default when left out, 0 for
none; a fine-tune never warms up). A run that "lost a class"
ends with some class's training images below 50 % recall: the failure that a capacity-limited
student distilled at a high temperature can fall into (two digits merged, never split again).

Writes OUT/NAME.json and OUT/NAME.md (`--name`, default distill).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def paired_summary(alone: list[float], distilled: list[float], teacher: float) -> dict:
    from scipy import stats

    d = np.asarray(distilled) - np.asarray(alone)
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    gap = teacher - float(np.mean(alone))
    return {
        "mean_alone": float(np.mean(alone)),
        "mean_distilled": float(np.mean(distilled)),
        "mean_difference": float(d.mean()),
        "ci95": [float(d.mean()) - half, float(d.mean()) + half],
        "gap_closed": float(d.mean()) / gap if gap > 0 else float("nan"),
        "wins": int((d > 0).sum()),
        "losses": int((d < 0).sum()),
    }


def lost_a_class(logits: np.ndarray, labels: np.ndarray) -> bool:
    """Whether some class's images are mostly predicted as others (recall below 50 %)."""
    predicted = logits.argmax(1)
    return any((predicted[labels == c] == c).mean() < 0.5 for c in np.unique(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15, help="the teacher's epochs, and the student's on the images")
    parser.add_argument("--view-epochs", type=int, default=5, help="the student's epochs over the shifted views")
    parser.add_argument("--shift-px", type=int, default=1)
    parser.add_argument("--teacher-channels", type=int, default=64)
    parser.add_argument("--student-channels", type=int, default=4)
    parser.add_argument(
        "--configs",
        nargs="+",
        default=["0.9:4"],
        help="distillation configs ALPHA:TEMPERATURE[:WARMUP], each paired with alone",
    )
    parser.add_argument(
        "--settings", nargs="+", choices=("images", "views", "compressed"), default=["images", "views"],
        help="which rows to run",
    )  # fmt: skip
    parser.add_argument("--weight-bits", type=int, default=2, help="the compressed row's weight bits, every layer")
    parser.add_argument("--activation-bits", type=int, default=4, help="the compressed row's input bits, every layer")
    parser.add_argument("--finetune-epochs", type=int, default=2, help="the compressed row's epochs over the views")
    parser.add_argument("--image-size", type=int, help="the digits resized to this many pixels a side (default 8)")
    parser.add_argument("--cifar10", help="a local 'cifar-10-batches-py' folder: CIFAR-10 instead of the digits")
    parser.add_argument("--out", default="benchmarks")
    parser.add_argument("--name", default="distill", help="file stem of the json and md written to --out")
    args = parser.parse_args()
    configs = {c: [float(v) for v in c.split(":")] for c in args.configs}  # ALPHA:T[:WARMUP]
    import torch

    from cosearch.compressors import compression_slots
    from cosearch.compressors.techniques.distill_alpha import Distillation
    from cosearch.core.candidate import Candidate, LayerPolicy, Policy
    from cosearch.evaluators.data import shifted_views
    from cosearch.evaluators.train import (
        DataSettings,
        TrainEvaluator,
        TrainingSettings,
        accuracy,
        predict,
        train_epochs,
    )
    from cosearch.search_spaces import SEARCH_SPACES

    torch.set_num_threads(1)
    dataset = {"dataset": "cifar10", "path": args.cifar10} if args.cifar10 else {}
    data = DataSettings(**dataset, image_size=args.image_size).load()
    dataset_name = "CIFAR-10" if args.cifar10 else f"digits at {data.input_shape[-1]}x{data.input_shape[-1]}"
    training = TrainingSettings()
    arch = {"cell": ARCH}
    start = time.perf_counter()
    torch.manual_seed(0)
    teacher = SEARCH_SPACES.create("nb201", channels=args.teacher_channels, cells_per_stage=2).build(
        arch, data.input_shape, data.num_classes
    )
    train_epochs(teacher, data.train, args.epochs, training.learning_rate, training, seed=0)
    teacher_accuracy = accuracy(predict(teacher, data.test.x), data.test.y)
    print(f"teacher {teacher_accuracy:.2%} in {time.perf_counter() - start:.0f} s", flush=True)
    student_space = SEARCH_SPACES.create("nb201", channels=args.student_channels, cells_per_stage=2)
    settings = []
    compressed_name = f"w{args.weight_bits}a{args.activation_bits} fine-tune on shifted views"
    rows = {
        "images": (0, args.epochs, "training images"),
        "views": (args.shift_px, args.view_epochs, "shifted views"),
        "compressed": (args.shift_px, args.finetune_epochs, compressed_name),
    }
    # The compressed row: the search's own compression path (reshape, fake-quantize, calibrate, then
    # `finetune_epochs` with or without the teacher's loss), called with one seed for both runs.
    finetuner = TrainEvaluator(student_space, training=TrainingSettings(epochs=0, finetune_epochs=args.finetune_epochs))
    for which in args.settings:
        shift_px, epochs, name = rows[which]
        views = shifted_views(data.train, shift_px)
        logits = predict(teacher, views.x)
        runs = {"alone": None, **{key: Distillation(logits, *values) for key, values in configs.items()}}
        seeds = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            initial = student_space.build(arch, data.input_shape, data.num_classes)
            row = {"seed": seed}
            candidate = None
            if which == "compressed":  # start from the float student trained alone on the images
                train_epochs(initial, data.train, args.epochs, training.learning_rate, training, seed)
                row["float"] = accuracy(predict(initial, data.test.x), data.test.y)
                layer = LayerPolicy(weight_bits=args.weight_bits, activation_bits=args.activation_bits)
                candidate = Candidate(arch, Policy(dict.fromkeys(compression_slots(initial), layer)))
            for run, loss in runs.items():
                student = copy.deepcopy(initial)  # the same initial weights; seed -> the same batches
                if candidate is None:
                    train_epochs(student, views, epochs, training.learning_rate, training, seed, loss)
                else:
                    student = finetuner.compress_trained(student, candidate, data, views, seed, loss, None)
                row[run] = accuracy(predict(student, data.test.x), data.test.y)
                row[f"{run} lost a class"] = lost_a_class(predict(student, data.train.x), data.train.y)
            seeds.append(row)
            print(json.dumps({"setting": name, **row}), flush=True)
        for key in configs:
            loss = runs[key]
            summary = paired_summary([s["alone"] for s in seeds], [s[key] for s in seeds], teacher_accuracy)
            settings.append(
                {
                    "setting": name,
                    "alpha": loss.alpha,
                    "temperature": loss.temperature,
                    "warmup": None if which == "compressed" else loss.warmup,  # a fine-tune does not warm up
                    "shift_px": shift_px,
                    "epochs": epochs,
                    "views": len(views.y),
                    "seeds": [
                        {"seed": s["seed"], "alone": s["alone"], "distilled": s[key]}
                        | ({"float": s["float"]} if "float" in s else {})
                        for s in seeds
                    ],
                    "lost_a_class": {
                        "alone": sum(s["alone lost a class"] for s in seeds),
                        "distilled": sum(s[f"{key} lost a class"] for s in seeds),
                    },
                    **summary,
                }
            )

    command = "python scripts/bench_distill.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "machine": platform.machine(),
        "teacher_test_accuracy": teacher_accuracy,
        "settings": settings,
    }
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Distillation, paired",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}; {dataset_name}, {len(data.test.y)} test images.",
        "",
        f"Teacher: NB201 {ARCH}, {args.teacher_channels} channels, {args.epochs} epochs: {teacher_accuracy:.2%} test accuracy.",
        f"Student: the same cell at {args.student_channels} channels. Each seed trains it twice from the same initial weights",
        "in the same batch order, alone (cross-entropy) and distilled (`alpha * T^2 * KL + (1 - alpha) * CE`, the",
        "teacher's logits on every training image or view; alpha rising from 0 over the warm-up share of the steps);",
        "test accuracy in PyTorch. The interval is the 95 % Student-t",
        "interval of the mean paired difference; gap closed = mean difference / (teacher - mean alone); lost a class:",
        "runs that end with some class below 50 % recall on the training images (distilled / alone).",
    ]
    compressed = [s for s in settings if s["setting"] == compressed_name]
    if compressed:
        floats = [r["float"] for r in compressed[0]["seeds"]]
        lines.append(
            f"The {compressed_name} row: the student trained alone on the images ({np.mean(floats):.2%} on average in float), "
            f"then {args.weight_bits}-bit weights and {args.activation_bits}-bit inputs on every layer (calibrated), fine-tuned "
            f"{args.finetune_epochs} epochs from the same compressed weights in the same order, alone or distilled."
        )
    lines += [
        "",
        "| setting | alpha | T | warm-up | seeds | alone | distilled | difference (points) | 95 % interval | gap closed | wins / losses | lost a class |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|",
    ]
    for s in settings:
        lo, hi = s["ci95"]
        lines.append(
            f"| {s['setting']} ({s['epochs']} epochs over {s['views']} images) | {s['alpha']:g} | {s['temperature']:g} "
            f"| {'-' if s['warmup'] is None else format(s['warmup'], '.2g')} | {len(s['seeds'])} | {s['mean_alone']:.2%} "
            f"| {s['mean_distilled']:.2%} | {s['mean_difference'] * 100:+.2f} | [{lo * 100:+.2f}, {hi * 100:+.2f}] "
            f"| {s['gap_closed']:.0%} | {s['wins']} / {s['losses']} | {s['lost_a_class']['distilled']} / {s['lost_a_class']['alone']} |"
        )
    lines += ["", "Every seed (test accuracy alone / distilled):", ""]
    for s in settings:
        lines.append(
            f"- {s['setting']}, alpha {s['alpha']:g}, T {s['temperature']:g}"
            + ("" if s["warmup"] is None else f", warm-up {s['warmup']:.2g}")
            + ": "
            + ", ".join(f"{r['alone']:.2%} / {r['distilled']:.2%}" for r in s["seeds"])
        )
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
