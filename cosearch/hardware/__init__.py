"""Device costs: latency measured with ONNX Runtime (more profiles come with device budgets)."""

from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency, run_onnx, to_onnx_bytes

__all__ = ["LatencySettings", "measure_latency", "run_onnx", "to_onnx_bytes"]
