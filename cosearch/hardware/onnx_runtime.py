"""ONNX conversion of a PyTorch model and latency measured by ONNX Runtime on this machine."""

from __future__ import annotations

import contextlib
import fcntl
import io
import statistics
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
OPSET = 17


def to_onnx_bytes(model: Any, input_shape: Sequence[int]) -> bytes:
    """Serialise an eval-mode copy of `model` to ONNX with a dynamic batch dimension.

    Uses torch's TorchScript exporter: on these small CNNs it is ~30x faster than the
    torch.export-based one (0.15 s against 4.3 s measured here), which matters once per candidate.
    """
    import torch

    was_training = model.training
    model.eval()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (torch.zeros(1, *input_shape),),
                buffer,
                dynamo=False,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                opset_version=OPSET,
                # Keep BatchNorm as its own node and parameters under their module names, so the
                # export step can find each layer's weights; ONNX Runtime fuses Conv+BN on load.
                training=torch.onnx.TrainingMode.PRESERVE,
            )
    finally:
        model.train(was_training)
    return buffer.getvalue()


@dataclass(frozen=True)
class LatencySettings:
    """How latency is measured: ONNX Runtime, CPU, batch 1, one intra-op thread by default."""

    threads: int = 1
    batch_size: int = 1
    warmup_runs: int = 50  # fewer left the first measurements of a file ~40 % slow here
    runs: int = 100

    def __post_init__(self) -> None:
        if self.threads < 1 or self.batch_size < 1 or self.warmup_runs < 0 or self.runs < 1:
            raise ValueError(f"latency settings must be positive, but got {self}")


# Lets ONNX Runtime fold weight-only DequantizeLinear into float weights at load time. Without it
# ORT keeps DQ nodes (for QDQ fusions) and runs them on every call: measured 0.092 ms against
# 0.043 ms for a small digits CNN here.
FOLD_WEIGHT_DEQUANTIZE = {"session.disable_quant_qdq": "1"}


def session(model_bytes_or_path: bytes | str, threads: int = 1, config: dict[str, str] | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes_or_path, options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def exclusive_measurement():
    """One latency measurement at a time on this machine, across processes (Ray workers).

    Two workers timing at once on 2 cores measured up to ~30 % slower than one at a time here;
    a worker that trains meanwhile uses its own core and disturbs far less.
    """
    path = Path(tempfile.gettempdir()) / "cosearch-latency.lock"
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def measure_latency(
    model_bytes_or_path: bytes | str,
    input_shape: Sequence[int],
    settings: LatencySettings = LatencySettings(),
    config: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Median and p90 wall time of one inference, in milliseconds, with how it was measured."""
    import onnxruntime as ort

    sess = session(model_bytes_or_path, settings.threads, config)
    feed = {
        INPUT_NAME: np.random.default_rng(0).standard_normal((settings.batch_size, *input_shape)).astype(np.float32)
    }
    times_ms = []
    with exclusive_measurement():
        for _ in range(settings.warmup_runs):
            sess.run(None, feed)
        for _ in range(settings.runs):
            start = time.perf_counter()
            sess.run(None, feed)
            times_ms.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(times_ms),
        "p90_ms": float(np.percentile(times_ms, 90)),
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        "session_config": dict(config or {}),
        **asdict(settings),
    }


def run_onnx(
    model_bytes_or_path: bytes | str, inputs: np.ndarray, batch_size: int = 256, config: dict[str, str] | None = None
) -> np.ndarray:
    """Logits of an ONNX model on `inputs` (N, C, H, W), in batches."""
    sess = session(model_bytes_or_path, threads=1, config=config)
    outs = [
        sess.run(None, {INPUT_NAME: inputs[i : i + batch_size].astype(np.float32)})[0]
        for i in range(0, len(inputs), batch_size)
    ]
    return np.concatenate(outs) if outs else np.zeros((0,))
