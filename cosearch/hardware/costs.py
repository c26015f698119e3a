"""A candidate's costs on each device of a job: predicted (cheap, before training) or measured."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.hardware.layers import LayerShape
from cosearch.hardware.onnx_runtime import measure_latency
from cosearch.hardware.profiles import DeviceProfile, MeasuredDevice


def predicted_costs(
    devices: Sequence[DeviceProfile],
    onnx_bytes: bytes,
    layers: Sequence[LayerShape],
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of every device that predicts (all kinds but measured ones), and how each was obtained."""
    metrics: dict[str, float] = {}
    how: dict[str, Any] = {}
    for device in devices:
        device_metrics, device_how = device.predict(onnx_bytes, layers)
        metrics.update(device_metrics)
        how.update(device_how)
    return metrics, how


def measure_here(device: MeasuredDevice, onnx_bytes: bytes, input_shape: Sequence[int]) -> dict[str, Any]:
    """Time `onnx_bytes` on this machine with the device's settings and default session options."""
    out = measure_latency(onnx_bytes, input_shape, device.settings)
    out["value_ms"] = out[f"{device.statistic}_ms"]
    out["statistic"] = device.statistic
    out["input_shape"] = [device.settings.batch_size, *input_shape]
    return out
