"""BitOps and the BitFusion-style accelerator model, on a small table written here."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from torch import nn

from cosearch.compressors import Precision
from cosearch.core.candidate import LayerPolicy, Policy
from cosearch.core.errors import SpecError
from cosearch.hardware.analytic import BitFusionTable
from cosearch.hardware.layers import LayerShape, bitops, layer_shapes


def tiny_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),
        nn.Conv2d(8, 16, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def test_layer_shapes_and_bitops_follow_the_policy():
    layers = layer_shapes(
        tiny_model(), (3, 16, 16), Policy({"0": LayerPolicy(weight_bits=4), "3": LayerPolicy(weight_bits=8)})
    )
    assert [(layer.name, layer.in_size, layer.out_size, layer.precision.weights) for layer in layers] == [
        ("0", 16, 8, 4),
        ("2", 8, 8, 32),
        ("3", 8, 8, 8),
        ("6", 1, 1, 32),
    ]
    assert [layer.macs for layer in layers] == [8 * 64 * 27, 8 * 64 * 9, 16 * 64 * 8, 160]
    assert layers[1].depthwise and not layers[2].depthwise
    expected = (8 * 64 * 27 * 4 + 8 * 64 * 9 * 32 + 16 * 64 * 8 * 8 + 160 * 32) * 32
    assert bitops(layers) == expected
    with_inputs = layer_shapes(tiny_model(), (3, 16, 16), Policy({"0": LayerPolicy(weight_bits=4, activation_bits=8)}))
    assert (
        with_inputs[0].precision == Precision(weights=4, inputs=8)
        and bitops(with_inputs) == 8 * 64 * 27 * 4 * 8 + (8 * 64 * 9 + 16 * 64 * 8 + 160) * 32 * 32
    )


@pytest.fixture()
def table(tmp_path):
    entries = {}
    for wb in (4, 8):
        for ab in (4, 8):
            entries[f"(8, 16, 8, 1, 1, 0, 1)-W{wb}A{ab}"] = {"latency": 0.01 * wb * ab, "energy": 0.1 * wb * ab}
            entries[f"(16, 32, 8, 1, 1, 0, 1)-W{wb}A{ab}"] = {"latency": 0.04 * wb * ab, "energy": 0.4 * wb * ab}
            entries[f"(8, 8, 8, 3, 1, 1, 8)-W{wb}A{ab}"] = {"latency": 0.002 * wb * ab, "energy": 0.02 * wb * ab}
    entries["head"] = {"latency": 1.0, "energy": 1.0}
    path = tmp_path / "bitfusion.json"
    path.write_text(json.dumps(entries))
    return BitFusionTable(path)


def layer(cin, cout, size, k=1, stride=1, pad=0, groups=1, bits=8) -> LayerShape:
    out = (size + 2 * pad - k) // stride + 1
    return LayerShape("l", cin, cout, size, k, stride, pad, groups, out, Precision(weights=bits))


def test_exact_entries_are_looked_up_and_bits_round_up(table):
    assert table.layer_cost(layer(8, 16, 8, bits=4), 4) == (pytest.approx(0.16), pytest.approx(1.6), True)
    assert table.layer_cost(layer(8, 16, 8, bits=3), 4)[0] == pytest.approx(0.16)  # 3 bits run as 4
    assert table.layer_cost(layer(8, 16, 8, bits=6), 6)[0] == pytest.approx(0.64)  # 6 -> 8 (the table has 4 and 8)
    assert table.layer_cost(layer(8, 16, 8, bits=32), 8)[0] == pytest.approx(0.64)  # float runs at the widest


def test_missing_layers_scale_their_nearest_entry_by_macs(table):
    # twice the output channels of an exact entry: twice the MACs
    latency, energy, exact = table.layer_cost(layer(8, 32, 8, bits=8), 8)
    assert not exact and latency == pytest.approx(2 * 0.64) and energy == pytest.approx(2 * 6.4)
    # a dense 3x3 conv, a kind the table lacks: scaled from dense 1x1 entries, never a crash
    latency, _, exact = table.layer_cost(layer(8, 16, 8, k=3, pad=1, bits=8), 8)
    assert not exact and latency == pytest.approx(0.64 * 9)


def test_network_prediction_sums_layers_and_reports_coverage(table):
    out = table.predict([layer(8, 16, 8, bits=4), layer(8, 32, 8, bits=4)], 4)
    assert out["latency_ms"] == pytest.approx(0.16 + 0.32) and out["exact_share"] == 0.5


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        "{}",
        json.dumps({"(1, 2)-W4A4": {"latency": 1, "energy": 1}}),
        json.dumps({"(8, 16, 8, 1, 1, 0, 1)-W4A4": {"latency": 1}}),
    ],
)
def test_a_malformed_accelerator_table_gets_one_clear_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SpecError, match=r"devices\.table"):
        BitFusionTable(path)


def test_model_costs_from_the_table(table):
    model = nn.Sequential(nn.Conv2d(8, 16, 1), nn.Conv2d(16, 32, 1))
    layers = layer_shapes(model, (8, 8, 8), Policy({"0": LayerPolicy(weight_bits=4), "1": LayerPolicy(weight_bits=8)}))
    assert table.predict(layers, 8)["latency_ms"] == pytest.approx(0.01 * 4 * 8 + 0.04 * 8 * 8)
