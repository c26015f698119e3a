from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from cosearch.compressors import compression_slots, prune_channels  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES  # noqa: E402

CASES = {
    "nb201": (
        {"channels": 8, "cells_per_stage": 1},
        {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"},
    ),
    "enas": (
        {"channels": 8},
        {
            "ops": ["conv_3x3", "sep_conv_5x5", "max_pool_3x3", "conv_5x5", "avg_pool_3x3", "sep_conv_3x3"],
            "skips": [[], [], [0], [0, 1], [], [2, 3]],
        },
    ),
    # Normal cells that never read input 1 leave the cell before each reduction unread: not built.
    "darts": (
        {"channels": 4, "layers": 5},
        {
            "genotype": "Genotype(normal=[('dil_conv_5x5', 0), ('none', 0), ('dil_conv_3x3', 0), ('sep_conv_5x5', 2), "
            "('avg_pool_3x3', 2), ('dil_conv_3x3', 3), ('dil_conv_3x3', 3), ('max_pool_3x3', 3)], normal_concat=[2, 3, 4, 5], reduce=[('avg_pool_3x3', 0), "
            "('skip_connect', 1), ('dil_conv_3x3', 1), ('sep_conv_5x5', 2), ('none', 0), ('sep_conv_3x3', 1), ('none', 0), ('skip_connect', 4)], reduce_concat=[2, 3, 4, 5])"
        },
    ),
    "mobilenet": (
        {},
        {
            "width": 1.0,
            "stages": [
                [{"kernel": 3, "expand": 3}],
                [{"kernel": 5, "expand": 6}],
                [{"kernel": 3, "expand": 4}],
                [{"kernel": 5, "expand": 3}],
            ],
        },
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_channels_really_go_and_shapes_depend_only_on_the_ratio(name):
    params, arch = CASES[name]
    space = SEARCH_SPACES.create(name, **params)
    torch.manual_seed(0)
    trained = space.build(arch, (1, 8, 8), 10)
    before = sum(p.numel() for p in trained.parameters())
    pruned = prune_channels(trained, 0.5, (1, 8, 8))
    assert sum(p.numel() for p in trained.parameters()) == before  # input untouched
    assert sum(p.numel() for p in pruned.parameters()) < 0.7 * before  # DARTS keeps its FactorizedReduce outputs
    assert pruned(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert sorted(compression_slots(pruned)) == sorted(compression_slots(trained))  # slot names survive
    torch.manual_seed(1)  # other weights, same ratio: same shapes, so saved weights load again
    rebuilt = prune_channels(space.build(arch, (1, 8, 8), 10), 0.5, (1, 8, 8))
    rebuilt.load_state_dict(pruned.state_dict())


def test_ratio_is_checked():
    with pytest.raises(ValueError, match=r"0 <= ratio < 1"):
        prune_channels(torch.nn.Linear(2, 2), 1.0, (2,))


@pytest.mark.parametrize("importance", ["l2", "taylor"])
def test_importance_measures_pick_other_channels_with_the_same_shapes(importance):
    params, arch = CASES["nb201"]
    space = SEARCH_SPACES.create("nb201", **params)
    torch.manual_seed(0)
    model = space.build(arch, (1, 8, 8), 10)
    batch = (torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,)))
    by_l1 = prune_channels(model, 0.5, (1, 8, 8))
    other = prune_channels(model, 0.5, (1, 8, 8), importance, batch)
    assert {k: v.shape for k, v in other.state_dict().items()} == {k: v.shape for k, v in by_l1.state_dict().items()}
    assert all(p.grad is None for p in other.parameters())  # Taylor's gradients are not left behind
    if importance == "taylor":
        assert any(not torch.equal(a, b) for a, b in zip(other.state_dict().values(), by_l1.state_dict().values()))
    with pytest.raises(ValueError, match="batch"):
        prune_channels(model, 0.5, (1, 8, 8), "taylor")
    with pytest.raises(ValueError, match="importance"):
        prune_channels(model, 0.5, (1, 8, 8), "l3")


@pytest.mark.parametrize("name", ["mobilenetv3_small_050", "resnet10t"])
def test_timm_models_lose_channels_across_residuals_and_squeeze_excite(name):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False, num_classes=10, in_chans=3)
    before = sum(p.numel() for p in model.parameters())
    pruned = prune_channels(model, 0.5, (3, 32, 32))
    assert sum(p.numel() for p in pruned.parameters()) < 0.35 * before  # ~ (1 - 0.5)^2 of the conv weights
    assert pruned.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == before  # input untouched


@pytest.mark.parametrize("name", sorted(CASES))
def test_pruned_networks_export_smaller_and_onnx_runtime_matches_pytorch(name):
    import numpy as np

    from cosearch.core import Policy
    from cosearch.hardware import run_onnx
    from cosearch.hardware.qdq import deployment

    params, arch = CASES[name]
    space = SEARCH_SPACES.create(name, **params)
    torch.manual_seed(0)
    model = space.build(arch, (1, 8, 8), 10).eval()
    files = {}
    for ratio in (0.0, 0.5):
        pruned = prune_channels(model, ratio, (1, 8, 8)).eval()
        files[ratio] = deployment(pruned, Policy(channel_ratio=ratio), (1, 8, 8))
        x = np.random.default_rng(0).standard_normal((8, 1, 8, 8)).astype(np.float32)
        with torch.no_grad():
            expected = pruned(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_onnx(files[ratio], x), expected, atol=1e-4, rtol=1e-4)
    import onnx

    def stored(onnx_bytes):
        return sum(int(np.prod(i.dims)) for i in onnx.load_from_string(onnx_bytes).graph.initializer)

    assert stored(files[0.5]) < 0.7 * stored(files[0.0])  # the channels are gone from the file, not zeroed
