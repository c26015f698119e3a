"""Distillation, paired: each seed trains the same student from the same initial weights in the same data
order twice, alone and with the teacher's soft labels, so the difference is the teacher's alone.

    python scripts/bench_distill.py [--seeds 10] [--epochs 15] [--view-epochs 5] [--out benchmarks]

The teacher is NB201 (bench_compress's cell) at `--teacher-channels`, trained `--epochs` on the
digits; the student the same cell at `--student-channels`. Rows: on the training images, and on
their shifted views (`--shift-px`, the teacher labels every view). Reports every seed's test
accuracy (PyTorch, 360 test images), the mean paired difference with its 95 % confidence
interval (Student's t), and the share of the student-teacher gap it closes.

Writes OUT/distill.json and OUT/distill.md.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=15, help="the teacher's epochs, and the student's on the images")
    parser.add_argument("--view-epochs", type=int, default=5, help="the student's epochs over the shifted views")
    parser.add_argument("--shift-px", type=int, default=1)
    parser.add_argument("--teacher-channels", type=int, default=64)
    parser.add_argument("--student-channels", type=int, default=4)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument(
        "--settings", nargs="+", choices=("images", "views"), default=["images", "views"], help="which rows to run"
    )
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    import torch

    from cosearch.compressors.techniques.distill_alpha import Distillation
    from cosearch.evaluators.data import shifted_views
    from cosearch.evaluators.train import DataSettings, TrainingSettings, accuracy, predict, train_epochs
    from cosearch.search_spaces import SEARCH_SPACES

    torch.set_num_threads(1)
    data = DataSettings().load()
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
    rows = {"images": (0, args.epochs, "training images"), "views": (args.shift_px, args.view_epochs, "shifted views")}
    for shift_px, epochs, name in (rows[which] for which in args.settings):
        views = shifted_views(data.train, shift_px)
        distillation = Distillation(predict(teacher, views.x), args.alpha, args.temperature)
        seeds = []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            initial = student_space.build(arch, data.input_shape, data.num_classes)
            row = {"seed": seed}
            for which, loss in (("alone", None), ("distilled", distillation)):
                student = copy.deepcopy(initial)  # the same initial weights; seed -> the same batches
                train_epochs(student, views, epochs, training.learning_rate, training, seed, loss)
                row[which] = accuracy(predict(student, data.test.x), data.test.y)
            seeds.append(row)
            print(json.dumps({"setting": name, **row}), flush=True)
        summary = paired_summary([s["alone"] for s in seeds], [s["distilled"] for s in seeds], teacher_accuracy)
        settings.append(
            {"setting": name, "shift_px": shift_px, "epochs": epochs, "views": len(views.y), "seeds": seeds, **summary}
        )

    command = "python scripts/bench_distill.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "command": command,
        "machine": platform.machine(),
        "teacher_test_accuracy": teacher_accuracy,
        "alpha": args.alpha,
        "temperature": args.temperature,
        "settings": settings,
    }
    (out / "distill.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Distillation, paired",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}; digits, {len(data.test.y)} test images.",
        "",
        f"Teacher: NB201 {ARCH}, {args.teacher_channels} channels, {args.epochs} epochs: {teacher_accuracy:.2%} test accuracy.",
        f"Student: the same cell at {args.student_channels} channels. Each seed trains it twice from the same initial weights",
        f"in the same batch order, alone (cross-entropy) and distilled (alpha {args.alpha}, T {args.temperature}, the",
        "teacher's logits on every training image or view); test accuracy in PyTorch. The interval is the 95 % Student-t",
        "interval of the mean paired difference; gap closed = mean difference / (teacher - mean alone).",
        "",
        "| setting | seeds | alone | distilled | difference (points) | 95 % interval | gap closed | wins / losses |",
        "|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for s in settings:
        lo, hi = s["ci95"]
        lines.append(
            f"| {s['setting']} ({s['epochs']} epochs over {s['views']} images) | {len(s['seeds'])} | {s['mean_alone']:.2%} "
            f"| {s['mean_distilled']:.2%} | {s['mean_difference'] * 100:+.2f} | [{lo * 100:+.2f}, {hi * 100:+.2f}] "
            f"| {s['gap_closed']:.0%} | {s['wins']} / {s['losses']} |"
        )
    lines += ["", "Every seed (test accuracy alone / distilled):", ""]
    for s in settings:
        lines.append(f"- {s['setting']}: " + ", ".join(f"{r['alone']:.2%} / {r['distilled']:.2%}" for r in s["seeds"]))
    (out / "distill.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
