"""Hashed weight sharing and global magnitude pruning: what they keep, what they cost, that they deploy."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from cosearch.compressors import HashedWeights, bake, compress, global_magnitude_policy, size_bytes  # noqa: E402
from cosearch.core import LayerPolicy, Policy, SpecError  # noqa: E402
from cosearch.hardware.onnx_runtime import run_onnx  # noqa: E402
from cosearch.hardware.qdq import deployment  # noqa: E402
from cosearch.job import spec_from_dict  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES, JointSpace  # noqa: E402


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)
    )


def test_hashed_layer_draws_every_weight_from_its_buckets():
    model = compress(small_model(), Policy({"4": LayerPolicy(hash_ratio=0.125)}))
    sharing = model[4].parametrizations.weight[0]
    weight = model[4].weight.detach()
    assert sharing.buckets.numel() == 640  # ceil(5120 x 0.125)
    assert torch.unique(weight.abs()).numel() <= 640
    assert torch.equal(weight, sharing.buckets.detach()[sharing.bucket] * sharing.sign)
    # Buckets start as the least-squares fit of the trained weights: better than any other bucket values.
    original = small_model()[4].weight.detach()
    fit = (weight - original).pow(2).sum()
    assert fit < (sharing.sign * original.mean() - original).pow(2).sum()
    assert fit < (original.pow(2).sum())


def test_hash_is_fixed_by_index_and_seed_and_buckets_train():
    a = HashedWeights(torch.randn(16, 32), 0.25)
    b = HashedWeights(torch.randn(16, 32), 0.25)
    assert torch.equal(a.bucket, b.bucket) and torch.equal(a.sign, b.sign)  # nothing to store but the seed
    assert not torch.equal(HashedWeights(torch.randn(16, 32), 0.25, seed=1).bucket, a.bucket)
    assert set(a.sign.unique().tolist()) == {-1.0, 1.0}
    counts = torch.bincount(a.bucket.flatten(), minlength=128)
    assert counts.min() >= 1 and counts.max() <= 12  # spread over the buckets, 4 per bucket on average
    model = compress(small_model(), Policy({"4": LayerPolicy(hash_ratio=0.25)}))
    model(torch.randn(4, 1, 8, 8)).pow(2).mean().backward()
    assert model[4].parametrizations.weight[0].buckets.grad.abs().sum() > 0


def test_hashed_size_counts_buckets_and_the_file_runs_in_onnx_runtime():
    model = small_model()
    dense = size_bytes(model, Policy())
    policy = Policy({"4": LayerPolicy(weight_bits=8, hash_ratio=0.125)})
    plain = bake(compress(model, policy)).eval()
    assert size_bytes(plain, policy) == dense - 5120 * 4 + 640 * 4  # buckets in float32, see size_bytes
    x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
    onnx_bytes = deployment(plain, policy, (1, 8, 8))
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(onnx_bytes, x), expected, atol=1e-4, rtol=1e-4)


def test_hash_ratio_is_checked_in_policy_and_job():
    with pytest.raises(ValueError, match="hash_ratio"):
        LayerPolicy(hash_ratio=0.0)
    with pytest.raises(SpecError, match=r"compression.hash_ratio\[1\]"):
        spec_from_dict({"compression": {"hash_ratio": [1.0, 1.5]}})


def test_hash_ratio_is_a_gene_per_slot_that_round_trips():
    joint = JointSpace(
        SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1),
        weight_bits=[8, 32],
        sparsity=[0.0],
        hash_ratio=[1.0, 0.25],
    )
    assert any(c.name.startswith("hash:") for c in joint.choices())
    rng = np.random.default_rng(0)
    candidates = [joint.decode(joint.sample(rng)) for _ in range(10)]
    assert any(lp.hash_ratio == 0.25 for c in candidates for lp in c.policy.layers.values())
    assert all(joint.decode(joint.encode(c)).key == c.key for c in candidates)


def test_global_pruning_removes_the_smallest_weights_wherever_they_are():
    model = small_model()
    with torch.no_grad():
        model[0].weight.mul_(100)  # the conv's weights are all large: global pruning spares them
    policy = global_magnitude_policy(
        model, Policy({"0": LayerPolicy(weight_bits=8), "4": LayerPolicy(weight_bits=8)}), 0.5
    )
    assert policy.get("0").sparsity == 0.0 and policy.get("0").weight_bits == 8
    assert policy.get("4").sparsity == pytest.approx(5120 * 0.5 / 5120 + 72 * 0.5 / 5120, abs=1e-3)
    plain = bake(compress(model, policy))
    weights = torch.cat([plain[0].weight.flatten(), plain[4].weight.flatten()])
    assert (weights == 0).float().mean().item() == pytest.approx(0.5, abs=1e-3)
    every = global_magnitude_policy(small_model(), Policy(), 0.3)  # no slots named: every layer
    assert set(every.layers) == {"0", "4"}
    with pytest.raises(ValueError, match="sparsity"):
        global_magnitude_policy(model, Policy(), 1.0)
