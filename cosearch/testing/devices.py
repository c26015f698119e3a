"""What every device kind promises: it is registered under its kind, takes only job fields,
names its metrics `BASE@NAME`, pickles (it travels to Ray workers), and costs a candidate's
deployed file: predicted kinds return exactly their metrics, measured ones time it."""

from __future__ import annotations

import math
import pickle
from typing import Any, Literal

import pytest

from cosearch.hardware.profiles import DEVICE_KINDS, DeviceProfile

INPUT_SHAPE = (1, 8, 8)


def sample_candidate() -> dict[str, Any]:
    """A small NB201 network with 8-bit weights, deployed: its ONNX file and layers."""
    import torch

    from cosearch.compressors import bake, compress
    from cosearch.core import LayerPolicy, Policy
    from cosearch.hardware.layers import layer_shapes
    from cosearch.hardware.qdq import deployment
    from cosearch.search_spaces import SEARCH_SPACES

    space = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)
    arch = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}
    policy = Policy({slot: LayerPolicy(weight_bits=8) for slot in space.layer_slots(arch)})
    torch.manual_seed(0)
    plain = bake(compress(space.build(arch, INPUT_SHAPE, 10), policy)).eval()
    return {"onnx_bytes": deployment(plain, policy, INPUT_SHAPE), "layers": layer_shapes(plain, INPUT_SHAPE, policy)}


class DeviceSuite:
    """Override the `device` fixture (an instance of the kind to check); `candidate` is
    `sample_candidate()` unless overridden (a lut table must hold its layers)."""

    @pytest.fixture
    def device(self) -> DeviceProfile:
        raise NotImplementedError("a subclass returns the device to check")

    @pytest.fixture
    def candidate(self) -> dict[str, Any]:
        return sample_candidate()

    def test_registered_under_its_kind_with_an_entry_model(self, device):
        from cosearch.job import device_entry

        assert DEVICE_KINDS.get(device.kind) is type(device)
        assert device.offers and all(isinstance(base, str) and "@" not in base for base in device.offers)
        assert device.entry.model_fields["kind"].annotation == Literal[device.kind]  # the union's tag
        fields = {key: getattr(device, key) for key in device.fields() if hasattr(device, key)}
        entry = device_entry({"kind": device.kind, **fields}, "devices.x")  # the job file can say this device
        assert isinstance(entry, device.entry) and entry.kind == device.kind

    def test_metrics_name_the_device(self, device):
        assert device.metrics() == tuple(f"{base}@{device.name}" for base in device.offers)

    def test_pickles(self, device):
        assert pickle.loads(pickle.dumps(device)) == device

    def test_costs_a_deployed_file(self, device, candidate):
        metrics, how = device.predict(candidate["onnx_bytes"], candidate["layers"])
        if device.measured:
            from cosearch.hardware.costs import measure_here

            assert not metrics, "a measured device predicts nothing"
            out = measure_here(device, candidate["onnx_bytes"], INPUT_SHAPE)
            assert out["value_ms"] > 0 and out["statistic"] == device.statistic
            return
        assert set(metrics) == set(device.metrics()) == set(how)
        assert all(isinstance(v, float) and math.isfinite(v) and v >= 0 for v in metrics.values())
