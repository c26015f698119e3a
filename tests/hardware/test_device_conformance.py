"""Every registered device kind passes `cosearch.testing.DeviceSuite` (add how to make a small one here)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from cosearch.hardware.onnx_runtime import LatencySettings
from cosearch.hardware.profiles import DEVICE_KINDS
from cosearch.testing import DeviceSuite
from cosearch.testing.devices import INPUT_SHAPE, sample_candidate

FAST = LatencySettings(warmup_runs=2, runs=5)


@pytest.fixture(scope="module")
def candidate_and_tables(tmp_path_factory):
    from cosearch.hardware.lut import profile

    candidate = sample_candidate()
    folder = tmp_path_factory.mktemp("tables")
    lut = profile([candidate["onnx_bytes"]], INPUT_SHAPE, "board", FAST, calibration=1)
    lut.save(folder / "lut.json")
    entries = {f"(4, 4, 8, 3, 1, 1, 1)-W8A{bits}": {"latency": 0.01 * bits, "energy": 0.1 * bits} for bits in (4, 8)}
    entries["head"] = {"latency": 1.0, "energy": 1.0}
    (folder / "bitfusion.json").write_text(json.dumps(entries))
    return candidate, folder


def make(kind: str, folder):
    from cosearch.hardware import AnalyticDevice, LutDevice, MeasuredDevice

    return {
        "measured": lambda: MeasuredDevice("board", FAST),
        "lut": lambda: LutDevice("board", str(folder / "lut.json")),
        "analytic": lambda: AnalyticDevice("board", str(folder / "bitfusion.json")),
    }[kind]()


def test_every_kind_has_a_maker(tmp_path):
    assert {make(kind, tmp_path).kind for kind in DEVICE_KINDS.names()} == set(DEVICE_KINDS.names())


class TestEveryDeviceKind(DeviceSuite):
    @pytest.fixture(params=DEVICE_KINDS.names())
    def device(self, request, candidate_and_tables):
        return make(request.param, candidate_and_tables[1])

    @pytest.fixture
    def candidate(self, candidate_and_tables):
        return candidate_and_tables[0]
