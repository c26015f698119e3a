"""A search with quantized activations, exported: the file is what the search measured."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from cosearch.controller import Controller, RunStore  # noqa: E402
from cosearch.export import export  # noqa: E402
from cosearch.job import spec_from_dict  # noqa: E402

pytestmark = pytest.mark.ray


def searched(tmp_path, compression: dict, training: dict, trials: int) -> list:
    """The ok results of a small NB201 digits search in tmp_path/run."""
    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
            "compression": compression,
            "strategy": {"name": "random"},
            "training": training,
            "latency": {"warmup_runs": 5, "runs": 30},
            "resources": {"trials": trials, "concurrency": trials},
        }
    )
    Controller.start(job, tmp_path / "run").run()
    with RunStore(tmp_path / "run") as store:
        return [r for r in store.results() if r.result.ok]


def test_export_of_a_quantized_activation_candidate_matches_its_search_metrics(ray_local, tmp_path):
    compression = {"weight_bits": [8], "sparsity": [0.0], "activation_bits": [8], "calibration": "percentile"}
    stored = searched(tmp_path, compression, {"epochs": 2, "finetune_epochs": 1}, trials=2)
    assert stored, "no candidate finished"
    result = stored[0].result
    assert result.measured["accuracy"]["model"] == "the deployed ONNX file in ONNX Runtime"
    assert abs(result.metrics["accuracy"] - result.measured["accuracy"]["pytorch_fake_quantized"]) <= 0.02
    card = export(tmp_path / "run", stored[0].id, tmp_path / "out")
    graph = onnx.load(str(tmp_path / "out" / "model.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert card["export"]["compact"] is None and not (tmp_path / "out" / "model.compact.onnx").exists()
    assert card["export"]["latency_ms"]["session_config"] == {}  # measured as users load it
    assert card["export"]["onnx_accuracy"]["val"] == pytest.approx(
        result.metrics["accuracy"]
    )  # the same file, the same number
    assert json.loads((tmp_path / "out" / "card.json").read_text())["policy"] == result.candidate.policy.to_json()
    # --portable: 8-bit weights as uint8 (exact on CPUs without VNNI too), the same predictions
    portable = export(tmp_path / "run", stored[0].id, tmp_path / "portable", portable=True)
    weights = {i.name: i for i in onnx.load(str(tmp_path / "portable" / "model.onnx")).graph.initializer}
    assert weights["stem.conv.weight_quantized"].data_type == onnx.TensorProto.UINT8
    assert portable["export"]["int8_weights"].startswith("uint8") and "--portable" in portable["export"]["int8_weights"]
    assert portable["export"]["onnx_accuracy"] == card["export"]["onnx_accuracy"]


def test_export_of_a_weight_only_candidate_writes_the_compact_form_beside_it(ray_local, tmp_path):
    import numpy as np
    import onnxruntime as ort

    stored = searched(tmp_path, {"weight_bits": [4], "sparsity": [0.0]}, {"epochs": 1, "finetune_epochs": 0}, 1)[0]
    card = export(tmp_path / "run", stored.id, tmp_path / "out")
    model, small = tmp_path / "out" / "model.onnx", tmp_path / "out" / "model.compact.onnx"
    assert not any(n.op_type == "DequantizeLinear" for n in onnx.load(str(model)).graph.node)  # float on the grid
    info = card["export"]["compact"]
    assert small.is_file() and info["file_bytes"] < 0.5 * card["export"]["file_bytes"]  # int4, two a byte
    assert info["session_config"] == {"session.disable_quant_qdq": "1"} and info["same_logits_as_model_onnx_val"]
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    plain = ort.InferenceSession(str(model)).run(None, {"input": x})[0]  # as a user loads it
    np.testing.assert_allclose(ort.InferenceSession(str(small)).run(None, {"input": x})[0], plain, atol=1e-4)
