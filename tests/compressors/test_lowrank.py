"""Low-rank factorisation: the best rank-k approximation, structural like pruning, deployable."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from cosearch.compressors import bake, compress, factorize, reshape, size_bytes  # noqa: E402
from cosearch.compressors.lowrank import rank_for  # noqa: E402
from cosearch.core import LayerPolicy, Policy  # noqa: E402
from cosearch.hardware import run_onnx  # noqa: E402
from cosearch.hardware.qdq import deployment  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES  # noqa: E402


def test_a_linear_layer_becomes_its_best_rank_k_approximation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48))
    factored = factorize(model, {"0": 0.25})
    first, second = factored[0][0], factored[0][1]
    assert (first.out_features, second.in_features) == (12, 12)  # 0.25 * min(64, 48)
    u, s, vh = torch.linalg.svd(model[0].weight.detach(), full_matrices=False)
    best = (u[:, :12] * s[:12]) @ vh[:12]
    torch.testing.assert_close(second.weight @ first.weight, best, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(second.bias, model[0].bias)
    assert isinstance(model[0], nn.Linear)  # the input is not changed


def test_only_layers_that_shrink_are_factorised():
    conv1x1, conv3x3 = nn.Conv2d(32, 32, 1), nn.Conv2d(32, 32, 3)
    assert rank_for(conv1x1, 0.25) == 8 and rank_for(conv3x3, 0.25) is None
    assert rank_for(conv1x1, 1.0) is None and rank_for(conv1x1, 0.75) is None  # 24 * 64 >= 32 * 32: no saving
    with pytest.raises(ValueError, match="ratio"):
        rank_for(conv1x1, 0.0)
    with pytest.raises(ValueError, match="rank_ratio"):
        LayerPolicy(rank_ratio=1.5)


def test_factorised_network_trains_exports_and_reloads():
    space = SEARCH_SPACES.create("nb201", channels=16, cells_per_stage=1)
    arch = {"cell": "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_1x1~2|"}
    slots = space.layer_slots(arch)
    policy = Policy({slot: LayerPolicy(weight_bits=8, sparsity=0.0, rank_ratio=0.25) for slot in slots})
    torch.manual_seed(0)
    model = space.build(arch, (1, 8, 8), 10)
    shaped = reshape(model, policy, (1, 8, 8))
    assert (
        sum(
            isinstance(m, nn.Sequential) and len(m) == 2 and isinstance(m[0], (nn.Conv2d, nn.Linear))
            for m in shaped.modules()
        )
        >= 3
    )
    plain = bake(compress(shaped, policy)).eval()
    assert size_bytes(plain, policy) < size_bytes(
        bake(compress(model, Policy({s: LayerPolicy(weight_bits=8) for s in slots}))), policy
    )
    x = np.random.default_rng(0).standard_normal((16, 1, 8, 8)).astype(np.float32)
    onnx_bytes = deployment(plain, policy, (1, 8, 8))
    with torch.no_grad():
        expected = plain(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_onnx(onnx_bytes, x), expected, atol=1e-4, rtol=1e-4)
    rebuilt = reshape(space.build(arch, (1, 8, 8), 10), policy, (1, 8, 8))
    rebuilt.load_state_dict(plain.state_dict())  # same policy, same shapes
