"""Devices and their costs: ONNX Runtime measurement, per-layer lookup tables, accelerator models."""

from cosearch.hardware.onnx_runtime import (
    FOLD_WEIGHT_DEQUANTIZE,
    LatencySettings,
    measure_latency,
    run_onnx,
    to_onnx_bytes,
)
from cosearch.hardware.profiles import AnalyticDevice, DeviceProfile, LutDevice, MeasuredDevice

__all__ = [
    "FOLD_WEIGHT_DEQUANTIZE",
    "AnalyticDevice",
    "DeviceProfile",
    "LatencySettings",
    "LutDevice",
    "MeasuredDevice",
    "measure_latency",
    "run_onnx",
    "to_onnx_bytes",
]
