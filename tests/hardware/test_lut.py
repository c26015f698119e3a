"""Per-layer latency tables: profile a small space, predict, save and load, refuse what they lack."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from cosearch.core.errors import SpecError
from cosearch.hardware.lut import LatencyTable, MissingLayers, fit_calibration, graph_nodes, profile, sampled_graphs
from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

SHAPE = (1, 8, 8)
FAST = LatencySettings(warmup_runs=5, runs=30)


@pytest.fixture(scope="module")
def table():
    joint = JointSpace(SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1), weight_bits=[32], sparsity=[0.0])
    return profile(
        sampled_graphs(joint, SHAPE, 10, seed=0, limit=12), SHAPE, "local-cpu", FAST, calibration=8, patience=100
    )


def test_profile_times_every_layer_configuration_it_meets(table):
    joint = JointSpace(SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1), weight_bits=[32], sparsity=[0.0])
    graphs = list(sampled_graphs(joint, SHAPE, 10, seed=0, limit=12))
    keys = {k for g in graphs for k in graph_nodes(g, SHAPE).keys}
    assert set(table.entries) == keys  # patience 100 > 12 networks: every network was read
    assert all(v >= 0 for v in table.entries.values()) and set(table.op_scales) <= {json.loads(k)[1] for k in keys}
    assert table.source["calibration"]["networks"] == 8
    ops = {json.loads(k)[1] for k in keys}
    assert any("Conv" in op for op in ops)  # keys name ORT's (fused) ops


def test_prediction_sums_the_layers_of_a_network(table):
    joint = JointSpace(SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1), weight_bits=[32], sparsity=[0.0])
    graph = next(iter(sampled_graphs(joint, SHAPE, 10, seed=0, limit=1)))
    keys = graph_nodes(graph, SHAPE).keys
    expected = table.overhead_ms + sum(table.op_scales.get(json.loads(k)[1], 1.0) * table.entries[k] for k in keys)
    assert table.predict(graph) == pytest.approx(expected)
    measured = measure_latency(graph, SHAPE, FAST)["median_ms"]
    assert 0.2 * measured < table.predict(graph) < 5 * measured  # same order; bench_latency measures the accuracy


def test_a_network_with_unprofiled_layers_is_refused(table):
    joint = JointSpace(
        SEARCH_SPACES.create("nb201", channels=6, cells_per_stage=1), weight_bits=[32], sparsity=[0.0]
    )  # other widths
    graph = next(iter(sampled_graphs(joint, SHAPE, 10, seed=0, limit=1)))
    with pytest.raises(MissingLayers, match="not in the table"):
        table.predict(graph)


def test_table_round_trips_through_its_file(table, tmp_path):
    path = tmp_path / "lut.json"
    table.save(path)
    loaded = LatencyTable.load(path)
    assert (
        loaded.entries == table.entries and loaded.overhead_ms == table.overhead_ms and loaded.input_shape == [1, 8, 8]
    )


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        json.dumps({"format": "other"}),
        json.dumps({"format": "cosearch-latency-table/1", "device": "x"}),
        json.dumps(
            {"format": "cosearch-latency-table/1", "device": "x", "input_shape": [1, 8, 8], "entries": {"k": -1.0}}
        ),
    ],
)
def test_a_malformed_table_gets_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=r"latency table|malformed"):
        LatencyTable.load(path)


def test_calibration_fits_overhead_and_a_scale_per_op_type():
    rng = np.random.default_rng(0)
    per_op = [{"Conv": float(c), "Relu": float(r)} for c, r in rng.uniform(0.1, 2.0, size=(30, 2))]
    measured = [0.05 + 0.9 * s["Conv"] + 0.1 * s["Relu"] for s in per_op]
    overhead, scales = fit_calibration(per_op, measured, ridge=1e-9)
    assert overhead == pytest.approx(0.05, abs=1e-4) and scales == pytest.approx({"Conv": 0.9, "Relu": 0.1}, abs=1e-3)
    _, pulled = fit_calibration(per_op[:1], measured[:1], ridge=10.0)  # one network: scales stay near 1
    assert all(0.5 < v < 1.5 for v in pulled.values())


def test_quantized_inputs_are_profiled_and_predicted_as_integer_kernels():
    joint = JointSpace(
        SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1),
        weight_bits=[8],
        sparsity=[0.0],
        activation_bits=[8],
    )
    table = profile(
        sampled_graphs(joint, SHAPE, 10, seed=0, limit=4), SHAPE, "local-cpu", FAST, calibration=4, patience=100
    )
    assert any("QLinear" in json.loads(k)[1] or "uint8" in k for k in table.entries)  # ORT's fused int8 nodes
    graph = next(iter(sampled_graphs(joint, SHAPE, 10, seed=0, limit=1)))
    assert table.predict(graph) > 0


def test_profile_keeps_the_lowest_of_several_rounds(monkeypatch):
    """A round slowed by other load must not make it into the table."""
    import cosearch.hardware.lut as lut

    joint = JointSpace(SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1), weight_bits=[32], sparsity=[0.0])
    calls = {"n": 0}
    real = lut._time_ms

    def slow_first_round(model_bytes, feed, settings):
        calls["n"] += 1
        return real(model_bytes, feed, settings) * (50.0 if calls["n"] <= 2 else 1.0)  # the first node's first round

    graphs = list(sampled_graphs(joint, SHAPE, 10, seed=0, limit=3))
    quiet = profile(graphs, SHAPE, "local-cpu", FAST, calibration=3, patience=100, passes=2)
    monkeypatch.setattr(lut, "_time_ms", slow_first_round)
    table = profile(graphs, SHAPE, "local-cpu", FAST, calibration=3, patience=100, passes=2)
    assert table.source["passes"] == 2
    first = next(iter(table.entries))
    assert table.entries[first] < 5 * quiet.entries[first] + 1e-3  # the 50x round was dropped
    with pytest.raises(ValueError, match="passes"):
        profile(graphs, SHAPE, "local-cpu", FAST, passes=0)
