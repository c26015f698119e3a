"""How close latency prediction comes to measurement, per search space, on this CPU.

    python scripts/bench_latency.py [--candidates 200] [--input-shape 3,32,32] \
        [--bitfusion ../shared/data/apq/bitfusion_lut.json] [--out benchmarks]

For each space: profile a per-layer table (as `cosearch profile` does), then draw fresh random
candidates (another seed, channel pruning included), predict each from the table and measure
it with ONNX Runtime (batch 1, 1 thread, lowest median of 100 runs over 3 rounds), and report the share within
+-10 % and the RMSE. The BitFusion analytic model is checked against its own table (leave one
out), since no accelerator is here. Writes OUT/latency.json and OUT/latency.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

SPACES = ("nb201", "darts", "enas", "mobilenet")


def bench_space(
    name: str, input_shape: tuple[int, ...], candidates: int, channel_ratio: list[float], passes: int
) -> dict:
    from cosearch import build
    from cosearch.hardware.lut import profile, sampled_graphs
    from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency
    from cosearch.job import spec_from_dict

    job = spec_from_dict(
        {
            "search_space": {"name": name},
            "compression": {"weight_bits": [32], "sparsity": [0.0], "channel_ratio": channel_ratio},
        }
    )
    joint = build.make_joint_space(job)
    settings = LatencySettings()
    start = time.perf_counter()
    table = profile(
        sampled_graphs(joint, input_shape, 10, seed=0, limit=300), input_shape, "local-cpu", settings, passes=passes
    )
    profile_s = time.perf_counter() - start
    predicted, graphs, missing = [], [], 0
    start = time.perf_counter()
    for graph in sampled_graphs(joint, input_shape, 10, seed=12345, limit=candidates):
        try:
            predicted.append(table.predict(graph))
        except ValueError:  # a layer configuration the profile never drew
            missing += 1
            continue
        graphs.append(graph)
    # Measured as the profile times: the lowest median over `passes` rounds through all candidates.
    rounds = [[measure_latency(g, input_shape, settings)["median_ms"] for g in graphs] for _ in range(passes)]
    p, m = np.asarray(predicted), np.min(rounds, axis=0)
    errors = p / m - 1
    row = {
        "space": name,
        "input_shape": list(input_shape),
        "channel_ratio": channel_ratio,
        "layer_configurations": len(table.entries),
        "profile_networks": table.source["networks_drawn"],
        "profile_s": round(profile_s, 1),
        "candidates": len(p),
        "not_predictable": missing,
        "within_10pct": float(np.mean(np.abs(errors) <= 0.10)),
        "within_5pct": float(np.mean(np.abs(errors) <= 0.05)),
        "rmse_ms": float(np.sqrt(np.mean((p - m) ** 2))),
        "mean_measured_ms": float(m.mean()),
        "error_p5_p50_p95": [float(v) for v in np.percentile(errors, [5, 50, 95])],
        "overhead_ms": table.overhead_ms,
        "op_scales": table.op_scales,
        "predict_and_measure_s": round(time.perf_counter() - start, 1),
        "single_round_spread_p95": float(np.percentile(np.max(rounds, axis=0) / m - 1, 95)),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("--input-shape", default="3,32,32")
    parser.add_argument("--spaces", default=",".join(SPACES))
    parser.add_argument("--channel-ratio", default="0,0.25,0.5", help="channel pruning shares the candidates draw from")
    parser.add_argument(
        "--passes",
        type=int,
        default=3,
        help="rounds of timing, profile and measurement alike; the lowest median counts",
    )
    parser.add_argument("--digits", action="store_true", help="also nb201 at the digits input 1x8x8 (overhead-bound)")
    parser.add_argument("--bitfusion", help="BitFusion table, e.g. ../shared/data/apq/bitfusion_lut.json")
    parser.add_argument("--out", default="benchmarks")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    shape = tuple(int(v) for v in args.input_shape.split(","))
    ratios = [float(v) for v in args.channel_ratio.split(",")]
    rows = [bench_space(name, shape, args.candidates, ratios, args.passes) for name in args.spaces.split(",")]
    if args.digits:
        rows.append(bench_space("nb201", (1, 8, 8), args.candidates, ratios, args.passes))
    analytic = None
    if args.bitfusion:
        from cosearch.hardware.analytic import BitFusionTable

        analytic = {"table": Path(args.bitfusion).name, **BitFusionTable(args.bitfusion).leave_one_out()}
    command = "python scripts/bench_latency.py " + shlex.join(sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "machine": platform.machine(),
        "python": platform.python_version(),
        "lut": rows,
        "analytic_leave_one_out": analytic,
    }
    (out / "latency.json").write_text(json.dumps(data, indent=1))
    lines = [
        "# Latency prediction benchmark",
        "",
        f"Command: `{command}` on {platform.machine()}, Python {platform.python_version()}.",
        "",
        "Per space: a per-layer table profiled here (`cosearch profile`), then fresh random candidates (channel pruning",
        f"{args.channel_ratio}) predicted from it and measured with ONNX Runtime (batch 1, 1 thread, median of 100 runs).",
        f'Profile and measurement alike take the lowest median of {args.passes} rounds through all items; "1-round spread" is the p95 of how much',
        "a candidate's slowest round exceeded its fastest: the noise a single measurement would have carried.",
        "",
        "| space | input | layer configs | profile s | candidates | within ±10 % | within ±5 % | RMSE ms | mean measured ms | error p5 / p50 / p95 | 1-round spread p95 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        p5, p50, p95 = r["error_p5_p50_p95"]
        lines.append(
            f"| {r['space']} | {'x'.join(map(str, r['input_shape']))} | {r['layer_configurations']} | {r['profile_s']:.0f} | {r['candidates']} "
            f"| {r['within_10pct']:.1%} | {r['within_5pct']:.1%} | {r['rmse_ms']:.4f} | {r['mean_measured_ms']:.3f} | {p5:+.1%} / {p50:+.1%} / {p95:+.1%} | {r['single_round_spread_p95']:.1%} |"
        )
    if analytic:
        lines += [
            "",
            f"BitFusion analytic model ({analytic['table']}), each of {analytic['entries']} entries predicted from its nearest other entry "
            f"of the same kind scaled by MACs (the rule used for layers missing from the table): latency within ±10 % for "
            f"{analytic['latency_within_10pct']:.1%}, energy for {analytic['energy_within_10pct']:.1%}.",
        ]
    (out / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
