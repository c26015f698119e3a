from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cosearch.compressors import bake, compress, compression_slots, reshape, size_bytes  # noqa: E402
from cosearch.core import LayerPolicy, Policy, SpecError  # noqa: E402


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10))


def test_compress_leaves_the_input_unchanged():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compress(
        model, Policy({"0": LayerPolicy(weight_bits=4, sparsity=0.5), "3": LayerPolicy(weight_bits=8, sparsity=0.25)})
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hasattr(m, "parametrizations") for m in model.modules())


@pytest.mark.parametrize(
    "policy",
    [
        Policy({"0": LayerPolicy(), "3": LayerPolicy()}),  # nothing structural: one plain copy
        Policy({"0": LayerPolicy(activation_bits=8), "3": LayerPolicy(weight_bits=4)}),  # on, not structural
        Policy({"0": LayerPolicy(), "3": LayerPolicy(rank_ratio=0.5)}),  # structural
    ],
)
def test_reshape_returns_a_copy_that_shares_no_module_with_its_input(policy):
    model = small_model()
    shaped = reshape(model, policy, (1, 8, 8))
    compress(shaped, policy, copy=False)  # what the evaluators do with it: the input must not change
    assert not {id(m) for m in model.modules()} & {id(m) for m in shaped.modules()}
    assert not any(hasattr(m, "input_quant") or hasattr(m, "parametrizations") for m in model.modules())


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.75])
def test_weights_land_on_the_grid_at_the_sparsity(bits, sparsity):
    model = compress(small_model(), Policy({"3": LayerPolicy(weight_bits=bits, sparsity=sparsity)}))
    weight = bake(model)[3].weight.detach()
    assert (weight == 0).float().mean().item() >= sparsity - 1e-3
    for row in weight:  # per output channel: at most 2^bits - 1 levels (symmetric, narrow range)
        assert torch.unique(row).numel() <= 2**bits - 1


def test_float_policy_is_identity():
    model = small_model()
    x = torch.randn(4, 1, 8, 8)
    assert torch.equal(compress(model, Policy({"0": LayerPolicy(weight_bits=32, sparsity=0.0)}))(x), model(x))


def test_bake_keeps_outputs_and_drops_parametrizations():
    compressed = compress(
        small_model(),
        Policy({"0": LayerPolicy(weight_bits=4, sparsity=0.5), "3": LayerPolicy(weight_bits=8, sparsity=0.0)}),
    )
    plain = bake(compressed)
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(compressed(x), plain(x))
    assert set(plain.state_dict()) == set(small_model().state_dict())
    assert compressed(x).shape == (4, 10)  # baking a copy did not break the original


def test_quantization_aware_training_gets_gradients_and_keeps_mask():
    compressed = compress(small_model(), Policy({"3": LayerPolicy(weight_bits=4, sparsity=0.5)}))
    layer = compressed[3]
    mask = layer.parametrizations.weight[0].mask.clone()
    optimizer = torch.optim.SGD(compressed.parameters(), lr=0.1)
    compressed(torch.randn(8, 1, 8, 8)).pow(2).mean().backward()
    assert layer.parametrizations.weight.original.grad.abs().sum() > 0
    optimizer.step()
    assert torch.equal(layer.weight == 0, mask == 0) or bool(((layer.weight != 0) <= (mask != 0)).all())


def test_size_accounts_bits_nonzeros_masks_and_scales():
    model = small_model()
    dense_bytes = sum(p.numel() for p in model.parameters()) * 4
    assert size_bytes(model, Policy()) == dense_bytes
    policy = Policy({"3": LayerPolicy(weight_bits=8, sparsity=0.0)})
    linear = model[3].weight
    expected_bits = (dense_bytes * 8 - linear.numel() * 32) + linear.numel() * 8 + linear.shape[0] * 32
    assert size_bytes(compress(model, policy), policy) == (expected_bits + 7) // 8
    sparse = Policy({"3": LayerPolicy(weight_bits=8, sparsity=0.5)})
    assert size_bytes(compress(model, sparse), sparse) < size_bytes(compress(model, policy), policy)


def test_policy_naming_a_missing_layer_is_an_error():
    with pytest.raises(SpecError, match="module names"):
        compress(small_model(), Policy({"decoder.9": LayerPolicy(weight_bits=8, sparsity=0.0)}))


def test_slots_are_conv_and_linear_layers():
    assert sorted(compression_slots(small_model())) == ["0", "3"]


def test_a_block_slot_governs_every_layer_inside_it():
    model = nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 1)), nn.Flatten(), nn.Linear(256, 10)
    )
    policy = Policy({"0": LayerPolicy(weight_bits=4, sparsity=0.5)})
    plain = bake(compress(model, policy))
    for layer in (plain[0][0], plain[0][1]):
        assert (layer.weight == 0).float().mean() >= 0.5 - 1e-3
    assert size_bytes(compress(model, policy), policy) < size_bytes(model, Policy())
    with pytest.raises(SpecError, match="overlap"):
        compress(
            model,
            Policy({"0": LayerPolicy(weight_bits=8, sparsity=0.0), "0.1": LayerPolicy(weight_bits=4, sparsity=0.0)}),
        )
