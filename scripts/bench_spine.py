"""Benchmark of the spine: the demo search end to end, and one exported model beside ONNX Runtime's own int8.

    python scripts/bench_spine.py [--job examples/digits.yaml] [--out benchmarks]

Writes OUT/spine.json and OUT/spine.md. Everything is measured in this one run on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run_demo(job: Path, run_dir: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cosearch.cli.main", "run", str(job), "--run-dir", str(run_dir)], check=True)
    return time.perf_counter() - start


def interleaved_latency_ms(
    models: dict[str, tuple[str, dict]], input_shape, rounds: int = 20, runs: int = 50, warmup: int = 50
) -> dict[str, dict[str, float]]:
    """Median and p90 per model, alternating models round by round so drift hits all alike."""
    from cosearch.hardware.onnx_runtime import INPUT_NAME, session

    sessions = {name: session(path, threads=1, config=config) for name, (path, config) in models.items()}
    feed = {INPUT_NAME: np.random.default_rng(0).standard_normal((1, *input_shape)).astype(np.float32)}
    samples: dict[str, list[float]] = {name: [] for name in models}
    for sess in sessions.values():
        for _ in range(warmup):
            sess.run(None, feed)
    for _ in range(rounds):
        for name, sess in sessions.items():
            for _ in range(runs):
                start = time.perf_counter()
                sess.run(None, feed)
                samples[name].append((time.perf_counter() - start) * 1e3)
    return {
        name: {"median_ms": statistics.median(v), "p90_ms": float(np.percentile(v, 90)), "runs": len(v)}
        for name, v in samples.items()
    }


def ort_quantize_static(fp32_path: Path, out_path: Path, calibration: np.ndarray, reduce_range: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    prepared = out_path.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32_path), str(prepared))
    quantize_static(
        str(prepared),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        reduce_range=reduce_range,
    )


def front_spread_against_noise(results, front, goals, model_path: Path, input_shape, job, repeats: int = 10) -> dict:
    """The spread of the Pareto set's measured latencies beside the spread of one model measured again and
    again as the search measures it: whether the demo's latency trade-off is more than noise."""
    import math

    from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency

    metric = next(o.metric for o in goals.objectives if o.metric.startswith("latency_ms"))
    by_id = {r.id: r.result for r in results}
    front_ms = [by_id[i].metrics[metric] for i in front if metric in by_id[i].metrics]
    settings = LatencySettings(**job.latency.model_dump())  # as the search measures
    repeat_ms = [measure_latency(str(model_path), input_shape, settings)["median_ms"] for _ in range(repeats)]
    front_ratio, repeat_ratio = max(front_ms) / min(front_ms), max(repeat_ms) / min(repeat_ms)
    return {
        "metric": metric,
        "front_ms": front_ms,
        "front_min_ms": min(front_ms),
        "front_max_ms": max(front_ms),
        "front_ratio": front_ratio,
        "repeats": repeats,
        "runs": settings.runs,
        "repeat_ms": repeat_ms,
        "repeat_min_ms": min(repeat_ms),
        "repeat_max_ms": max(repeat_ms),
        "repeat_ratio": repeat_ratio,
        "repeat_cv": statistics.stdev(repeat_ms) / statistics.mean(repeat_ms),
        "front_over_noise": math.log(front_ratio) / max(math.log(repeat_ratio), 1e-9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default="examples/digits.yaml")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()

    from cosearch import build
    from cosearch.controller import RunStore
    from cosearch.evaluators.train import accuracy
    from cosearch.export import export
    from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE, run_onnx
    from cosearch.hardware.qdq import int8_weights_note
    from cosearch.job import spec_from_dict
    from cosearch.report import pareto_ids

    work = Path(tempfile.mkdtemp(prefix="bench_spine_"))
    run_dir = work / "run"
    wall_s = run_demo(Path(args.job), run_dir)
    with RunStore(run_dir) as store:
        job = spec_from_dict(store.job())
        results = store.results()
    goals = job.goals()
    front = pareto_ids(results, goals)
    pick = front[0]  # the most accurate model within budget
    card = export(run_dir, pick, work / "export")
    data = build.data_settings(job).load()
    if any(lp.get("activation_bits", 32) != 32 for lp in card["policy"]["layers"].values()):
        raise SystemExit(
            "the pick quantizes activations: ORT's quantize_static needs its float file, which this script expects"
        )

    ours = work / "export" / "model.onnx"  # weight-only pick: float32 weights on their grid
    compact = work / "export" / "model.compact.onnx"
    ort_int8 = work / "ort_int8_reduce_range.onnx"
    ort_int8_default = work / "ort_int8_default.onnx"
    calibration = data.train.x[:256]
    ort_quantize_static(ours, ort_int8, calibration, reduce_range=True)
    ort_quantize_static(ours, ort_int8_default, calibration, reduce_range=False)
    models = {
        "cosearch export model.onnx, default session": (str(ours), {}),
        "cosearch export model.compact.onnx, session.disable_quant_qdq=1": (str(compact), FOLD_WEIGHT_DEQUANTIZE),
        "cosearch export model.compact.onnx, default session": (str(compact), {}),
        "ORT quantize_static QDQ int8, reduce_range=True": (str(ort_int8), {}),
        "ORT quantize_static QDQ int8, defaults (U8S8)": (str(ort_int8_default), {}),
    }
    if not compact.is_file():
        models = {name: m for name, m in models.items() if "compact" not in name}
    latency = interleaved_latency_ms(models, data.input_shape)
    spread = front_spread_against_noise(results, front, goals, ours, data.input_shape, job)
    ort_ms = latency["ORT quantize_static QDQ int8, reduce_range=True"]["median_ms"]
    rows = []
    for name, (path, config) in models.items():
        rows.append(
            {
                "model": name,
                "test_accuracy": accuracy(run_onnx(path, data.test.x, config=config), data.test.y),
                "file_kb": Path(path).stat().st_size / 1024,
                **latency[name],
                "x_ort": latency[name]["median_ms"] / ort_ms,
            }
        )
    report = {
        "command": f"python scripts/bench_spine.py --job {args.job} --out {args.out}",
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
        "demo": {
            "job": args.job,
            "wall_s": wall_s,
            "evaluations": len(results),
            "failed": sum(r.result.status == "failed" for r in results),
            "feasible": sum(goals.feasible(r.result) for r in results),
            "pareto_size": len(front),
            "budgets": [str(c) for c in goals.constraints],
        },
        "exported": {
            "id": pick,
            "arch": card["arch"],
            "policy_summary": card["policy_summary"],
            "search_metrics": card["search_metrics"],
            "card_latency_ms": card["export"]["latency_ms"]["median_ms"],
            "deployed_size_kb": card["search_metrics"]["size_kb"],
        },
        "latency_comparison": rows,
        "front_latency_against_noise": spread,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spine.json").write_text(json.dumps(report, indent=2))
    demo = report["demo"]
    lines = [
        "# Spine benchmark",
        "",
        f"Command: `{report['command']}` on {report['machine']['processor']}, Python {report['machine']['python']}; {int8_weights_note()}.",
        "",
        f"Demo search (`{args.job}`): {demo['evaluations']} evaluations in {demo['wall_s']:.0f} s wall time, "
        f"{demo['failed']} failed, {demo['feasible']} within budgets ({', '.join(demo['budgets'])}), Pareto set of {demo['pareto_size']}.",
        "",
        f"Exported pick #{pick}: {card['policy_summary']}; search accuracy (val) {card['search_metrics']['accuracy']:.2%}, "
        f"deployed weight size {card['search_metrics']['size_kb']:.1f} KB.",
        "",
        f"Latency of this pick as the search measured it: {card['search_metrics'].get('latency_ms@local-cpu', float('nan')):.4f} ms; "
        f"as the export card measured model.onnx: {card['export']['latency_ms']['median_ms']:.4f} ms (both default session options).",
        "",
        "ONNX Runtime, batch 1, 1 thread, models interleaved round by round. The ORT baselines quantize model.onnx",
        "(float32 weights on the pick's grid; per-channel int8 weights, uint8 activations, 256 training images to calibrate).",
        '"x ORT" is the median over that of ORT quantize_static with reduce_range=True.',
        "",
        "| model | test accuracy | file KB | median ms | p90 ms | x ORT |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['model']} | {r['test_accuracy']:.2%} | {r['file_kb']:.1f} | {r['median_ms']:.4f} | {r['p90_ms']:.4f} | {r['x_ort']:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        f"Is the latency axis real? The Pareto set's latencies ({spread['metric']}, as the search measured them) span "
        f"{spread['front_min_ms']:.4f}-{spread['front_max_ms']:.4f} ms, {spread['front_ratio']:.2f}x. The pick's model.onnx "
        f"measured {spread['repeats']} times the way the search measures (median of {spread['runs']} runs each): "
        f"{spread['repeat_min_ms']:.4f}-{spread['repeat_max_ms']:.4f} ms, {spread['repeat_ratio']:.2f}x "
        f"(coefficient of variation {spread['repeat_cv']:.1%}). The front spans {spread['front_over_noise']:.1f}x "
        "the repeat-to-repeat spread (max/min ratios, in log terms).",
    ]
    (out / "spine.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
