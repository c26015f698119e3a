"""What every compression technique promises, on a small conv net with BatchNorm: the input
model is not changed, size does not rise as the knob gets stronger, bake keeps outputs, the
ONNX file agrees with PyTorch, and bad values are refused naming the rule and the value."""

from __future__ import annotations

import itertools
import re
from typing import Any, ClassVar

import numpy as np
import pytest

from cosearch.compressors.base import Compressor, compressors, runs_integer

INPUT_SHAPE = (3, 8, 8)


def small_model():
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():  # statistics a trained network would have
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.rand(module.running_mean.shape, generator=generator) - 0.5)
            module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    return model.eval()


class CompressorSuite:
    """Set `name` (the registry name), `values` (allowed non-default values, mildest first) and
    `bad_values` (values the gene must refuse), or override the fixtures of those names."""

    name: ClassVar[str] = ""
    values: ClassVar[tuple[Any, ...]] = ()
    bad_values: ClassVar[tuple[Any, ...]] = ()

    @pytest.fixture
    def compressor_name(self) -> str:
        return self.name

    @pytest.fixture
    def compressor_values(self, compressor_name) -> tuple[Any, ...]:
        return self.values

    @pytest.fixture
    def compressor_bad_values(self, compressor_name) -> tuple[Any, ...]:
        return self.bad_values

    @pytest.fixture
    def compressor(self, compressor_name) -> Compressor:
        return compressors()[compressor_name]

    @staticmethod
    def policy(compressor: Compressor, value: Any, slots):
        from cosearch.core import LayerPolicy, Policy

        if compressor.gene.scope == "network":
            return Policy({slot: LayerPolicy() for slot in slots}, **{compressor.name: value})
        return Policy({slot: LayerPolicy(**{compressor.name: value}) for slot in slots})

    @staticmethod
    def prepared(compressor: Compressor, value: Any):
        """The small model, reshaped, compressed and calibrated under `value`, with its policy."""
        import torch

        from cosearch.compressors import compress, compression_slots, reshape
        from cosearch.compressors.activations import calibrate

        model = small_model()
        policy = CompressorSuite.policy(compressor, value, compression_slots(model))
        compressed = compress(reshape(model, policy, INPUT_SHAPE), policy).eval()
        batch = torch.from_numpy(np.random.default_rng(0).standard_normal((32, *INPUT_SHAPE)).astype(np.float32))
        return calibrate(compressed, [batch]).eval(), policy

    def test_gene_is_well_formed(self, compressor, compressor_values):
        gene = compressor.gene
        assert gene.scope in ("layer", "network")
        assert gene.check(gene.default), "the default (off) must be allowed"
        assert all(gene.check(v) for v in gene.search), "every search option must be allowed"
        assert compressor_values and all(gene.check(v) for v in compressor_values)
        assert gene.default not in compressor_values, "`values` are the non-default ones"

    def test_bad_values_name_the_rule_and_the_value(self, compressor, compressor_bad_values):
        from cosearch.core import SpecError
        from cosearch.job import spec_from_dict

        assert compressor_bad_values, "give at least one value the gene refuses"
        for bad in compressor_bad_values:
            with pytest.raises(ValueError, match=re.escape(f"`{compressor.gene.rule}` must hold, but got")):
                self.policy(compressor, bad, ["0"])
            with pytest.raises(SpecError) as error:
                spec_from_dict({"search_space": {"name": "nb201"}, "compression": {compressor.name: [bad]}})
            assert repr(bad) in str(error.value) or str(bad) in str(error.value)
            assert compressor.gene.allowed in str(error.value)

    def test_input_model_is_unchanged(self, compressor, compressor_values):
        from cosearch.compressors import compress, compression_slots, reshape

        model = small_model()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        for value in compressor_values:
            policy = self.policy(compressor, value, compression_slots(model))
            compress(reshape(model, policy, INPUT_SHAPE), policy)
        after = model.state_dict()
        assert set(after) == set(before) and all(before[k].equal(after[k]) for k in before)
        assert not any(hasattr(m, "parametrizations") for m in model.modules())

    def test_size_does_not_rise_as_the_knob_gets_stronger(self, compressor, compressor_values):
        from cosearch.compressors import size_bytes

        sizes = [size_bytes(*self.prepared(compressor, v)) for v in (compressor.gene.default, *compressor_values)]
        assert all(a >= b for a, b in itertools.pairwise(sizes)), sizes
        shrinks = type(compressor).weight_cost is not Compressor.weight_cost or (
            type(compressor).reshape is not Compressor.reshape
        )
        if shrinks:  # a technique that changes what is stored must save something at its strongest
            assert sizes[-1] < sizes[0], sizes

    def test_kept_channels_counts_what_reshape_keeps(self, compressor, compressor_values):
        """A technique that says how many channels it keeps (what an elastic supernet trains)
        keeps that many in every group of the small model (its two convs and hidden linear)."""
        from torch import nn

        from cosearch.compressors import compression_slots, reshape

        if not compressor.removes_channels:
            pytest.skip(f"{compressor.name} removes no channels")
        model = small_model()
        for value in compressor_values:
            shaped = reshape(model, self.policy(compressor, value, compression_slots(model)), INPUT_SHAPE)
            widths = [m.out_channels if isinstance(m, nn.Conv2d) else m.out_features for m in shaped[:-1]
                      if isinstance(m, (nn.Conv2d, nn.Linear))]  # fmt: skip
            assert widths == [compressor.kept_channels(n, value) for n in (16, 16, 32)], (value, widths)

    def test_bake_keeps_outputs_and_the_onnx_file_agrees(self, compressor, compressor_values):
        import torch

        from cosearch.compressors import bake
        from cosearch.hardware import run_onnx
        from cosearch.hardware.qdq import deployment

        x = np.random.default_rng(1).standard_normal((16, *INPUT_SHAPE)).astype(np.float32)
        for value in compressor_values:
            compressed, policy = self.prepared(compressor, value)
            plain = bake(compressed).eval()
            with torch.no_grad():
                expected = compressed(torch.from_numpy(x)).numpy()
                baked = plain(torch.from_numpy(x)).numpy()
            np.testing.assert_allclose(baked, expected, rtol=1e-5, atol=1e-5)
            onnx_bytes = deployment(plain, policy, INPUT_SHAPE, images=x)
            got = run_onnx(onnx_bytes, x)
            scale = float(np.abs(expected).max())
            if runs_integer(policy):
                # integer kernels: every layer output and sum is rounded to 8 bits as well
                assert np.abs(got - expected).max() < 0.15 * scale, f"{compressor.name}={value}"
                assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75, f"{compressor.name}={value}"
                continue
            np.testing.assert_allclose(
                got, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=f"{compressor.name}={value}"
            )
