from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from cosearch.compressors import bake, compress  # noqa: E402
from cosearch.core import CosearchError, LayerPolicy, Policy  # noqa: E402
from cosearch.hardware import run_onnx, to_onnx_bytes  # noqa: E402
from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE  # noqa: E402
from cosearch.hardware.qdq import compact, deployment, int8_weights_exact  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES  # noqa: E402


@pytest.mark.parametrize(
    "space_name, arch",
    [
        ("nb201", {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}),
        (
            "enas",
            {
                "ops": ["conv_3x3", "sep_conv_5x5", "max_pool_3x3", "conv_5x5", "avg_pool_3x3", "sep_conv_3x3"],
                "skips": [[], [], [0], [0, 1], [], [2, 3]],
            },
        ),
    ],
)
def test_compact_int8_storage_matches_the_fake_quantized_model(space_name, arch):
    """model.onnx keeps weight-only layers in float (fast with default options); the compact file
    stores them as integers and computes the same, with or without folding on load."""
    space = SEARCH_SPACES.create(space_name, channels=8)
    slots = space.layer_slots(arch)
    bits = [4, 8, 32]
    policy = Policy(
        {slot: LayerPolicy(weight_bits=bits[i % 3], sparsity=0.5 if i % 2 else 0.0) for i, slot in enumerate(slots)}
    )
    torch.manual_seed(0)
    compressed = compress(space.build(arch, (1, 8, 8), 10), policy)
    compressed.eval()
    plain = bake(compressed)
    float_bytes = deployment(plain, policy, (1, 8, 8))
    assert not any(n.op_type == "DequantizeLinear" for n in onnx.load_from_string(float_bytes).graph.node)
    qdq_bytes = compact(float_bytes, plain, policy)
    graph = onnx.load_from_string(qdq_bytes).graph
    quantized_layers = sum(1 for slot in slots if policy.get(slot).weight_bits != 32)
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) >= quantized_layers
    assert len(qdq_bytes) < len(float_bytes)
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = compressed(torch.from_numpy(x)).numpy()
    for file, config in ((float_bytes, None), (qdq_bytes, None), (qdq_bytes, FOLD_WEIGHT_DEQUANTIZE)):
        np.testing.assert_allclose(run_onnx(file, x, config=config), expected, atol=1e-4, rtol=1e-4)


def test_weights_off_the_grid_are_refused():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    float_bytes = to_onnx_bytes(model, (1, 8, 8))  # not baked: float weights are not on a 4-bit grid
    with pytest.raises(CosearchError, match="grid"):
        compact(float_bytes, model, Policy({"1": LayerPolicy(weight_bits=4, sparsity=0.0)}))


def test_batch_norms_are_folded_into_their_convs_in_the_deployed_file():
    from cosearch.hardware.qdq import deployment

    space = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
    arch = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}
    torch.manual_seed(0)
    model = space.build(arch, (1, 8, 8), 10)
    for module in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.5, 1.5)
    policy = Policy(
        {
            slot: LayerPolicy(weight_bits=[4, 8, 32][i % 3], sparsity=0.0)
            for i, slot in enumerate(space.layer_slots(arch))
        }
    )
    plain = bake(compress(model, policy)).eval()
    onnx_bytes = deployment(plain, policy, (1, 8, 8))
    graph = onnx.load_from_string(onnx_bytes).graph
    producer = {out: n.op_type for n in graph.node for out in n.output}
    left = [producer.get(n.input[0]) for n in graph.node if n.op_type == "BatchNormalization"]
    assert left == ["Add"]  # only the head's BatchNorm, after a sum, stays; every conv's is folded
    x = np.random.default_rng(1).standard_normal((16, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(onnx_bytes, x), expected, atol=1e-4, rtol=1e-4)


def test_four_bit_weights_are_stored_two_a_byte_in_the_compact_file():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    files = {}
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    for bits in (4, 8):
        policy = Policy({"1": LayerPolicy(weight_bits=bits), "3": LayerPolicy(weight_bits=8)})
        plain = bake(compress(model, policy)).eval()
        files[bits] = compact(deployment(plain, policy, (1, 8, 8)), plain, policy)
        with torch.no_grad():
            expected = plain(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_onnx(files[bits], x), expected, atol=1e-4, rtol=1e-4)
    stored = {i.name: i for i in onnx.load_from_string(files[4]).graph.initializer}
    assert stored["1.weight_quantized"].data_type == onnx.TensorProto.INT4
    assert len(files[8]) - len(files[4]) >= 0.45 * 64 * 256  # about half a byte saved per weight
    assert compact(deployment(plain, Policy(), (1, 8, 8)), plain, Policy()) is None  # nothing to make smaller


@pytest.mark.parametrize(
    "weight_bits, portable, stored_type",
    [(4, False, "INT8"), (7, False, "INT8"), (7, True, "INT8"), (8, False, None), (8, True, "UINT8")],
)
def test_integer_layers_store_weights_in_the_container_their_kernels_read(weight_bits, portable, stored_type):
    """Up to 7 bits: int8 (u8 x s8 kernels cannot overflow their 16-bit pair sums); 8 bits: int8 where
    this machine's kernel sums them exactly (None: as probed), else and in a portable file uint8 with
    zero point 128 (u8 x u8, exact everywhere). Either way the stored values are the layer's grid."""
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    policy = Policy({name: LayerPolicy(weight_bits=weight_bits, activation_bits=8) for name in ("1", "3")})
    plain = bake(compress(model, policy)).eval()
    graph = onnx.load_from_string(deployment(plain, policy, (1, 8, 8), portable=portable)).graph
    stored = {i.name: onnx.numpy_helper.to_array(i) for i in graph.initializer}
    quantized = stored["1.weight_quantized"]
    stored_type = stored_type or ("INT8" if int8_weights_exact() else "UINT8")
    assert quantized.dtype == np.dtype(stored_type.lower())
    levels = quantized.astype(np.int16) - (128 if stored_type == "UINT8" else 0)
    qmax = 2 ** (weight_bits - 1) - 1
    assert np.abs(levels).max() == qmax
    np.testing.assert_allclose(
        levels * stored["1.weight_scale"][:, None], plain[1].weight.detach().numpy(), rtol=1e-5, atol=1e-7
    )


def test_8_bit_weights_compute_what_the_portable_file_computes_at_the_kernels_extremes():
    """Inputs at the top of their range times weights at +-127 in every pair: where this machine's u8 x s8
    kernel would clamp a pair sum at 32767, the probe must have chosen uint8 weights; either way the
    default file computes what the portable one (exact on every CPU) does."""
    from cosearch.compressors import calibrate

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    with torch.no_grad():  # every weight at its channel's largest magnitude: 127 on the grid, pairs of one sign
        model[1].weight.copy_(0.05 * torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(16))
    policy = Policy({name: LayerPolicy(weight_bits=8, activation_bits=8) for name in ("1", "3")})
    compressed = compress(model, policy)
    x = np.random.default_rng(0).uniform(0.9, 1.0, (64, 1, 8, 8)).astype(np.float32)  # near 255 once quantized
    calibrate(compressed, [torch.from_numpy(x)], "minmax")
    plain = bake(compressed).eval()
    default = run_onnx(deployment(plain, policy, (1, 8, 8), images=x), x)
    portable = run_onnx(deployment(plain, policy, (1, 8, 8), images=x, portable=True), x)
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(default, portable, atol=1e-5)
    assert np.abs(default - expected).max() < 0.05 * np.abs(expected).max()


def test_the_int8_probe_reads_a_kernel_not_a_guess():
    """The probe runs ONNX Runtime once per process and answers a bool (True here on VNNI or ARM CPUs)."""
    int8_weights_exact.cache_clear()
    first = int8_weights_exact()
    assert isinstance(first, bool) and int8_weights_exact() is first
    assert int8_weights_exact.cache_info().hits >= 1


@pytest.mark.parametrize("space_name", ["nb201", "darts", "enas", "mobilenet"])
def test_mixed_activation_bits_deploy_and_run_on_every_space(space_name):
    """Layers with 8-bit inputs beside float ones (activation_bits [8, 32]): a BatchNorm folded into a
    conv that feeds a residual Add once broke output calibration (ONNX Runtime's fusions dropped the
    value the calibration probe asked for), so 1 candidate in 3 of an NB201 digits run never deployed."""
    import onnxruntime as ort

    from cosearch.hardware.qdq import deployment
    from cosearch.search_spaces import JointSpace

    space = (
        SEARCH_SPACES.create(space_name, channels=8) if space_name != "mobilenet" else SEARCH_SPACES.create(space_name)
    )
    joint = JointSpace(space, weight_bits=[4, 8, 32], sparsity=[0.0], activation_bits=[8, 32])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 8, 8)).astype(np.float32)
    for _ in range(6 if space_name == "nb201" else 3):
        candidate = joint.decode(joint.sample(rng))
        torch.manual_seed(0)
        plain = bake(compress(space.build(candidate.arch, (1, 8, 8), 10), candidate.policy))
        session = ort.InferenceSession(deployment(plain, candidate.policy, (1, 8, 8)))  # as users load it
        assert np.isfinite(session.run(None, {"input": x})[0]).all()


def test_a_pool_whose_scales_the_integer_kernel_refuses_stays_float_and_runs():
    """A wide feature map pooled into a classifier whose input range is narrow (after fine-tuning moved
    the features, as on efficientnet_b0): ONNX Runtime's QLinearGlobalAveragePool refuses an input /
    output scale ratio of 256 or more at run time, so that pool stays float."""
    import torch
    from torch import nn

    from cosearch.compressors import bake, calibrate, compress
    from cosearch.hardware.onnx_runtime import run_onnx
    from cosearch.hardware.qdq import deployment

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)
    )
    policy = Policy({"0": LayerPolicy(activation_bits=8), "4": LayerPolicy(activation_bits=8)})
    images = torch.rand(64, 1, 6, 6)
    compressed = calibrate(compress(model, policy), [images])
    with torch.no_grad():
        compressed[0].weight.mul_(1e5)  # features now span ~1e5x the range the classifier's input was calibrated on
    plain = bake(compressed)
    onnx_bytes = deployment(plain, policy, (1, 6, 6), images=images.numpy())
    assert run_onnx(onnx_bytes, images.numpy()).shape == (64, 3)  # it raised "out of computation range" before
