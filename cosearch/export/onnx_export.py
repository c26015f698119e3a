"""Export one result of a run: model.onnx that ONNX Runtime runs as it is, a compact form of it when its
weight-only layers can be stored smaller, and card.json saying how each was measured."""

from __future__ import annotations

import io
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np

from cosearch import build
from cosearch.compressors.base import runs_integer
from cosearch.controller.store import RunStore
from cosearch.core.errors import CosearchError
from cosearch.evaluators.train import accuracy, predict
from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE, LatencySettings, measure_latency, run_onnx
from cosearch.hardware.qdq import compact, deployment
from cosearch.job import spec_from_dict

# ONNX Runtime and PyTorch run the same float graph; what differs is summation order.
OUTPUT_ATOL = 1e-3
# With quantized activations the file also quantizes layer outputs (for integer kernels), which
# the PyTorch model does not: the two must agree on the predicted class, not on every logit.
QUANTIZED_MIN_AGREEMENT = 0.95


def load_model(store: RunStore, result_id: int):
    """The deployable PyTorch model whose metrics result `result_id` reports, and the run's job."""
    import torch

    stored = store.get(result_id)
    if stored is None:
        raise CosearchError(
            f"no result with id {result_id} in {store.run_dir}; see `cosearch pareto {store.run_dir} --all`"
        )
    if not stored.result.ok:
        raise CosearchError(f"result {result_id} is {stored.result.status} ({stored.result.error}); pick an ok one")
    weights = store.weights_of(stored.result)
    if weights is None:
        raise CosearchError(f"result {result_id} has no stored weights (its evaluator keeps none); nothing to export")
    job = spec_from_dict(store.job(), str(store.run_dir))
    data = build.data_settings(job).load()
    from cosearch.compressors import add_activation_quantizers, reshape

    policy = stored.result.candidate.policy
    model = build.make_space(job).build(stored.result.candidate.arch, data.input_shape, data.num_classes)
    # Same policy, same shapes: see compressors.reshape. Input quantizers carry saved scales.
    model = add_activation_quantizers(reshape(model, policy, data.input_shape), policy, copy=False)
    model.load_state_dict(torch.load(io.BytesIO(weights), weights_only=True))
    model.eval()
    return model, stored, job, data


def export(
    run_dir: str | Path, result_id: int, out_dir: str | Path, finetune_epochs: int = 0, portable: bool = False
) -> dict[str, Any]:
    """Write OUT/model.onnx and OUT/card.json; the card's numbers are measured on the written files.
    `finetune_epochs`: train the pick further first, under its compression, on the training and
    validation images (see `cosearch.export.finetune`). `portable`: 8-bit weights of integer layers
    as uint8, exact on every CPU, where this machine would store int8 (see `cosearch.hardware.qdq`).

    model.onnx is the file the search measured, fast with ONNX Runtime's default session options:
    integer layers as int8 QDQ, weight-only layers as float32 values on their grid. When weight-only
    layers exist, OUT/model.compact.onnx stores them as int8 / int4 + DequantizeLinear (smaller; as
    fast once loaded with the session config `session.disable_quant_qdq=1`).
    """
    import onnx
    import onnxruntime
    import torch

    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CosearchError(
            f"--out {out_dir} is a file; give a folder for model.onnx and card.json (it is created if missing)"
        )
    tuned = None
    with RunStore(run_dir) as store:
        model, stored, job, data = load_model(store, result_id)
        if finetune_epochs:
            from cosearch.export.finetune import finetune

            model, tuned = finetune(model, stored, job, data, store, finetune_epochs)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CosearchError(f"--out {out_dir}: cannot create the folder ({error.strerror})") from None
    onnx_path, compact_path = out_dir / "model.onnx", out_dir / "model.compact.onnx"
    policy = stored.result.candidate.policy
    c = build.compression_settings(job)  # output ranges calibrated exactly as the search's evaluator did
    onnx_bytes = deployment(
        model, policy, data.input_shape, images=c.images(data), calibration=c.calibration, portable=portable
    )
    _write(onnx_path, onnx_bytes)
    onnx.checker.check_model(str(onnx_path))
    compact_bytes = compact(onnx_bytes, model, policy)
    if compact_bytes is not None:
        _write(compact_path, compact_bytes)
    elif compact_path.exists():  # from an earlier export of another pick: it would not be this model
        compact_path.unlink()
    quantized_inputs = runs_integer(policy)

    torch_val = predict(model, data.val.x)
    onnx_val = run_onnx(str(onnx_path), data.val.x)
    onnx_test = run_onnx(str(onnx_path), data.test.x)
    max_abs_diff = float(np.abs(torch_val - onnx_val).max())
    agreement = float((torch_val.argmax(axis=1) == onnx_val.argmax(axis=1)).mean())
    settings = LatencySettings(**job.latency.model_dump())
    latency = measure_latency(str(onnx_path), data.input_shape, settings)  # default session options
    compact_card = None
    if compact_bytes is not None:
        compact_val = run_onnx(str(compact_path), data.val.x, config=FOLD_WEIGHT_DEQUANTIZE)
        compact_card = {
            "file": compact_path.name,
            "file_bytes": compact_path.stat().st_size,
            "weights_storage": "weight-only layers as int4 (2-4 bits, opset 21) or int8 + per-channel DequantizeLinear",
            "session_config": dict(FOLD_WEIGHT_DEQUANTIZE),
            "load": "options = onnxruntime.SessionOptions(); "
            "options.add_session_config_entry('session.disable_quant_qdq', '1'); "
            "onnxruntime.InferenceSession(path, options)",
            "latency_ms": measure_latency(str(compact_path), data.input_shape, settings, FOLD_WEIGHT_DEQUANTIZE),
            "latency_ms_default_session": measure_latency(str(compact_path), data.input_shape, settings),
            "same_logits_as_model_onnx_val": bool(np.allclose(compact_val, onnx_val, atol=OUTPUT_ATOL)),
        }
    result = stored.result
    card = {
        "id": stored.id,
        "key": result.candidate.key,
        "arch": dict(result.candidate.arch),
        "policy": result.candidate.policy.to_json(),
        "policy_summary": result.candidate.policy.summary(),
        "search_metrics": dict(result.metrics),
        "search_measured": dict(result.measured),
        "finetune": tuned,  # None: the weights the search measured
        "export": {
            "file": onnx_path.name,
            "file_bytes": onnx_path.stat().st_size,
            "session_options": "ONNX Runtime defaults: onnxruntime.InferenceSession(path)",
            "weights_storage": "layers with a quantized input: int8 + per-channel DequantizeLinear (2-8 bits; float "
            "weights at 8 bits), except 8-bit weights as uint8 with zero point 128 where int8_weights says so; every "
            "other layer float32 (weight-only ones on their grid)",
            "int8_weights": _int8_weights(policy, portable),
            "activations": (
                "ONNX Runtime's static QDQ (uint8, per tensor) over the integer layers and the Adds, pooling and "
                "classifier between them: the layers' input scales as the search calibrated or learnt them, every "
                "other range calibrated on the search's calibration images; ONNX Runtime runs them as integer kernels"
                if quantized_inputs
                else "float"
            ),
            "onnx_accuracy": {
                "val": accuracy(onnx_val, data.val.y),
                "test": accuracy(onnx_test, data.test.y),
                "samples": {"val": len(data.val.y), "test": len(data.test.y)},
                "dataset": data.name,
            },
            "pytorch_accuracy_val": accuracy(torch_val, data.val.y),
            "max_abs_logit_diff_vs_pytorch": max_abs_diff,
            "same_class_as_pytorch_val": agreement,
            "latency_ms": latency,
            "compact": compact_card,
            "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version()},
            "onnxruntime": onnxruntime.__version__,
        },
    }
    if not quantized_inputs and max_abs_diff > OUTPUT_ATOL:
        raise CosearchError(f"exported ONNX disagrees with PyTorch (max |diff| {max_abs_diff:.2e} > {OUTPUT_ATOL})")
    if quantized_inputs and agreement < QUANTIZED_MIN_AGREEMENT:
        raise CosearchError(
            f"exported ONNX predicts another class than PyTorch for {1 - agreement:.1%} of validation images (> {1 - QUANTIZED_MIN_AGREEMENT:.0%})"
        )
    _write(out_dir / "card.json", json.dumps(card, indent=2).encode())
    return card


def _int8_weights(policy, portable: bool) -> str:
    """How the file stores 8-bit weights of integer layers, and on which CPUs it is exact."""
    from cosearch.compressors.base import layer_precision
    from cosearch.hardware.qdq import int8_weights_exact

    if not any(p.integer and p.weights >= 8 for p in map(layer_precision, policy.layers.values())):
        return "none at 8 bits: 2-7 bit weights as int8 are exact with every CPU's u8 x s8 kernels"
    if portable or not int8_weights_exact():
        why = "--portable" if portable else "this CPU's u8 x s8 kernel saturates on full-range int8 (no VNNI)"
        return f"uint8, zero point 128 ({why}): exact on every CPU, through slower u8 x u8 kernels"
    return (
        "int8, full range: exact and fastest on this CPU (probed) and on CPUs with VNNI or ARM dot products; "
        "an x86 CPU without VNNI (AVX2 only) can saturate on them: export with --portable for such a target"
    )


def _write(path: Path, data: bytes) -> None:
    if path.is_dir():
        raise CosearchError(f"{path} is a folder; export writes a file of that name there")
    try:
        path.write_bytes(data)
    except OSError as error:
        raise CosearchError(f"{path}: cannot write ({error.strerror})") from None
