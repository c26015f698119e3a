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


def test_export_of_a_quantized_activation_candidate_matches_its_search_metrics(ray_local, tmp_path):
    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
            "compression": {"weight_bits": [8], "sparsity": [0.0], "activation_bits": [8], "calibration": "percentile"},
            "strategy": {"name": "random"},
            "training": {"epochs": 2, "finetune_epochs": 1},
            "latency": {"warmup_runs": 5, "runs": 30},
            "resources": {"trials": 2, "concurrency": 2},
        }
    )
    Controller.start(job, tmp_path / "run").run()
    with RunStore(tmp_path / "run") as store:
        stored = [r for r in store.results() if r.result.ok]
    assert stored, "no candidate finished"
    result = stored[0].result
    assert result.measured["accuracy"]["model"] == "the deployed ONNX file in ONNX Runtime"
    assert abs(result.metrics["accuracy"] - result.measured["accuracy"]["pytorch_fake_quantized"]) <= 0.02
    card = export(tmp_path / "run", stored[0].id, tmp_path / "out")
    graph = onnx.load(str(tmp_path / "out" / "model.onnx")).graph
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    assert (
        card["export"]["recommended_session_config"] == {}
        and card["export"]["latency_ms_with_dequantize_folded"] is None
    )
    assert card["export"]["onnx_accuracy"]["val"] == pytest.approx(
        result.metrics["accuracy"]
    )  # the same file, the same number
    assert json.loads((tmp_path / "out" / "card.json").read_text())["policy"] == result.candidate.policy.to_json()
