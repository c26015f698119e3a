"""A candidate's costs on each device of a job: predicted (cheap, before training) or measured."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from cosearch.hardware.analytic import load_bitfusion
from cosearch.hardware.layers import LayerShape
from cosearch.hardware.lut import LatencyTable
from cosearch.hardware.onnx_runtime import measure_latency
from cosearch.hardware.profiles import AnalyticDevice, DeviceProfile, LutDevice, MeasuredDevice


@lru_cache(maxsize=8)
def load_latency_table(path: str) -> LatencyTable:
    return LatencyTable.load(path)


def predicted_costs(
    devices: Sequence[DeviceProfile],
    onnx_bytes: bytes,
    layers: Sequence[LayerShape],
    config: dict[str, str] | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of every lut and analytic device, and how each was obtained."""
    metrics: dict[str, float] = {}
    how: dict[str, Any] = {}
    for device in devices:
        if isinstance(device, LutDevice):
            table = load_latency_table(device.table)
            metric = f"latency_ms@{device.name}"
            metrics[metric] = table.predict(onnx_bytes, config)
            how[metric] = {
                "how": "predicted: per-layer lookup table",
                "table": device.table,
                "profiled_on": table.source.get("processor"),
            }
        elif isinstance(device, AnalyticDevice):
            out = load_bitfusion(device.table).predict(layers, device.activation_bits)
            for base in ("latency_ms", "energy_mj"):
                metrics[f"{base}@{device.name}"] = out[base]
                how[f"{base}@{device.name}"] = {
                    "how": "analytic: bit-serial accelerator table",
                    "table": device.table,
                    "activation_bits": device.activation_bits,
                    "layers_in_table": out["exact_share"],
                }
    return metrics, how


def measure_here(
    device: MeasuredDevice, onnx_bytes: bytes, input_shape: Sequence[int], config: dict[str, str] | None = None
) -> dict[str, Any]:
    """Time `onnx_bytes` on this machine with the device's settings and the file's session config."""
    out = measure_latency(onnx_bytes, input_shape, device.settings, config)
    out["value_ms"] = out[f"{device.statistic}_ms"]
    out["statistic"] = device.statistic
    return out
