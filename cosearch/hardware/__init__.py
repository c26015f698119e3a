"""Device costs: latency measured with ONNX Runtime (more profiles come with device budgets)."""

from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE, LatencySettings, measure_latency, run_onnx, to_onnx_bytes

__all__ = ["FOLD_WEIGHT_DEQUANTIZE", "LatencySettings", "measure_latency", "run_onnx", "to_onnx_bytes"]
