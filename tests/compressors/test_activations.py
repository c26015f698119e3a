"""Activation quantization: calibration methods, the fake quantizer, LSQ, and the deployed QDQ file."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from torch import nn  # noqa: E402

from cosearch.compressors import ActivationFakeQuant, bake, calibrate, compress  # noqa: E402
from cosearch.compressors.activations import CALIBRATIONS, choose_range, scale_and_zero_point  # noqa: E402
from cosearch.core import LayerPolicy, Policy  # noqa: E402
from cosearch.hardware import run_onnx  # noqa: E402
from cosearch.hardware.qdq import deployment, int8_weights_exact  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES  # noqa: E402

ARCH = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}


def relu_like_samples() -> np.ndarray:
    rng = np.random.default_rng(0)
    values = np.maximum(rng.standard_normal(20000), 0.0)
    values[:1] = 40.0  # a rare outlier, as activations have
    return values


def test_calibration_methods_clip_outliers_to_different_degrees():
    samples = relu_like_samples()
    ranges = {method: choose_range(samples, 8, method) for method in CALIBRATIONS}
    assert ranges["minmax"] == (0.0, 40.0)
    for method in ("percentile", "mse", "kl"):
        low, high = ranges[method]
        assert low <= 0.0 and 1.0 < high < 40.0, (method, ranges[method])  # outliers clipped, the bulk kept
    scale, zero_point = scale_and_zero_point(-1.0, 3.0, 255)
    assert scale == pytest.approx(4 / 255) and zero_point == 64  # 0 lands on the grid


@pytest.mark.parametrize("bits, levels", [(4, 16), (8, 256)])
def test_fake_quantizer_has_the_grid_of_its_bits(bits, levels):
    quantizer = ActivationFakeQuant(bits)
    calibrate(nn.Sequential(quantizer), [torch.linspace(-1, 3, 5000).reshape(1, -1)], "minmax")
    out = quantizer(torch.linspace(-2, 4, 20000))
    assert len(torch.unique(out)) == levels
    assert out.min() == pytest.approx(-1.0, abs=4 / (levels - 1)) and out.max() == pytest.approx(
        3.0, abs=4 / (levels - 1)
    )


def test_compress_quantizes_the_inputs_the_policy_names_and_lsq_learns_the_step():
    space = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
    slots = space.layer_slots(ARCH)
    model = space.build(ARCH, (1, 8, 8), 10)
    policy = Policy(
        {
            slot: LayerPolicy(weight_bits=8, sparsity=0.0, activation_bits=8 if i % 2 else 32)
            for i, slot in enumerate(slots)
        }
    )
    compressed = compress(model, policy, learn_activation_scales=True)
    quantized = {
        name.rsplit(".input_quant", 1)[0]
        for name, m in compressed.named_modules()
        if isinstance(m, ActivationFakeQuant)
    }
    assert quantized == {slot for i, slot in enumerate(slots) if i % 2}
    assert not any(isinstance(m, ActivationFakeQuant) for m in model.modules())  # the input model is untouched
    x = torch.randn(8, 1, 8, 8)
    calibrate(compressed, [x], "mse")
    compressed.train()
    compressed(x).square().mean().backward()
    scales = [m.scale for m in compressed.modules() if isinstance(m, ActivationFakeQuant)]
    assert all(s.grad is not None and torch.isfinite(s.grad).all() for s in scales)
    plain = bake(compressed)
    assert not any(isinstance(m.scale, nn.Parameter) for m in plain.modules() if isinstance(m, ActivationFakeQuant))


def test_float_weights_behind_a_quantized_input_run_at_8_bits_per_channel():
    """No float kernel takes a quantized input: ONNX Runtime would round such weights to int8 per
    tensor on load, so the file stores them at 8 bits per channel and runs integer kernels."""
    from cosearch.hardware.lut import optimized_graph

    space = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
    torch.manual_seed(0)
    policy = Policy({slot: LayerPolicy(activation_bits=8) for slot in space.layer_slots(ARCH)})
    compressed = compress(space.build(ARCH, (1, 8, 8), 10), policy)
    x = np.random.default_rng(0).standard_normal((64, 1, 8, 8)).astype(np.float32)
    calibrate(compressed, [torch.from_numpy(x)], "minmax")
    plain = bake(compressed).eval()
    onnx_bytes = deployment(plain, policy, (1, 8, 8), images=x)
    runs = [n.op_type for n in optimized_graph(onnx_bytes).graph.node]
    assert runs.count("QLinearConv") == sum(isinstance(m, nn.Conv2d) for m in plain.modules())
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load_from_string(onnx_bytes).graph.initializer}
    assert stored["stem.conv.weight_quantized"].dtype == (np.int8 if int8_weights_exact() else np.uint8)
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    got = run_onnx(onnx_bytes, x)
    assert np.abs(got - expected).max() < 0.15 * np.abs(expected).max()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


@pytest.mark.parametrize("activation_bits", [8, 4])
def test_integer_layers_run_as_onnx_runtime_integer_kernels(activation_bits):
    """The integer region is ONNX Runtime's own QDQ graph: every conv, Add, pooling and the classifier
    runs as an integer kernel, and the layers' inputs keep the scales the model calibrated."""
    from cosearch.hardware.lut import optimized_graph

    space = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
    torch.manual_seed(0)
    policy = Policy(
        {slot: LayerPolicy(weight_bits=8, activation_bits=activation_bits) for slot in space.layer_slots(ARCH)}
    )
    compressed = compress(space.build(ARCH, (1, 8, 8), 10), policy)
    x = np.random.default_rng(0).standard_normal((128, 1, 8, 8)).astype(np.float32)
    calibrate(compressed, [torch.from_numpy(x)], "minmax")
    plain = bake(compressed).eval()
    onnx_bytes = deployment(plain, policy, (1, 8, 8), images=x, calibration="minmax")
    runs = [n.op_type for n in optimized_graph(onnx_bytes).graph.node]
    convs = sum(isinstance(m, nn.Conv2d) for m in plain.modules())
    assert runs.count("QLinearConv") == convs and "QGemm" in runs
    assert "Conv" not in runs and "FusedConv" not in runs
    if activation_bits == 8:
        assert "Add" not in runs and "QLinearAdd" in runs
    else:  # 16 levels: each 4-bit input keeps the exporter's clamp (Max, Min) in front of its quantizer
        assert runs.count("Min") + runs.count("Clip") >= convs
    stored = {i.name: i for i in onnx.load_from_string(onnx_bytes).graph.initializer}
    assert stored["stem.conv.weight_quantized"].data_type == (  # 8-bit weights: U8S8 where exact, else U8U8
        onnx.TensorProto.INT8 if int8_weights_exact() else onnx.TensorProto.UINT8
    )
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    got = run_onnx(onnx_bytes, x)
    assert np.abs(got - expected).max() < 0.15 * np.abs(expected).max()  # outputs and sums are rounded too
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9
