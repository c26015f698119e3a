from __future__ import annotations

import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

SPACE = SEARCH_SPACES.create("mobilenet")
ARCH = {
    "width": 0.75,
    "stages": [
        [{"kernel": 3, "expand": 3}],
        [{"kernel": 5, "expand": 6}, {"kernel": 7, "expand": 4}],
        [{"kernel": 3, "expand": 4}],
        [{"kernel": 5, "expand": 3}],
    ],
}


def test_arch_becomes_timm_block_strings():
    assert SPACE.arch_def(ARCH)[1] == ["ir_r1_k5_s2_e6_c24", "ir_r1_k7_s1_e4_c24"]


def test_built_model_is_timms_efficientnet():
    torch = pytest.importorskip("torch")
    from timm.models.efficientnet import EfficientNet

    model = SPACE.build(ARCH, (1, 8, 8), 10)
    assert isinstance(model, EfficientNet)
    assert model.blocks[1][1].conv_dw.kernel_size == (7, 7)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    assert "blocks.1.1" in SPACE.layer_slots(ARCH) and "blocks.0.1" not in SPACE.layer_slots(ARCH)


def test_blocks_past_the_depth_do_not_change_the_candidate():
    joint = JointSpace(SPACE)
    sample = joint.encode(joint.canonical(ARCH, {}))
    sample["stage0.block2.kernel"] = 7  # stage 0 has depth 1: block 2 does not exist
    assert joint.decode(sample).key == joint.decode(joint.encode(joint.canonical(ARCH, {}))).key


def test_bad_values_name_the_block():
    bad = {**ARCH, "stages": [ARCH["stages"][0], [{"kernel": 4, "expand": 6}], ARCH["stages"][2], ARCH["stages"][3]]}
    with pytest.raises(SpecError, match=r"arch.stages\[1\]\[0\]"):
        SPACE.validate_arch(bad)
    with pytest.raises(SpecError, match=r"search_space\.stage_strides"):
        SEARCH_SPACES.create("mobilenet", stage_channels=[8, 16], stage_strides=[1])


def test_the_elastic_supernet_shares_kernels_through_a_learnt_transform_and_sorts_its_channels():
    """A smaller kernel is the largest one's centre through a transform (identity at first, learnt:
    gradients reach it); sorting the expanded channels by importance leaves the largest network's
    function and its optimizer state in step, and puts the most important channels first."""
    torch = pytest.importorskip("torch")
    small = SEARCH_SPACES.create("mobilenet", stage_channels=(8, 16), stage_strides=(1, 2), depths=(1, 2))
    supernet = small.supernet((1, 8, 8), 10)
    arch = {
        "width": 1.0,
        "stages": [[{"kernel": 3, "expand": 6}], [{"kernel": 5, "expand": 3}, {"kernel": 7, "expand": 6}]],
    }
    supernet.choose(arch)
    weights = supernet.path_weights()
    largest = supernet.net.get_parameter("blocks.0.0.conv_dw.weight")
    assert torch.equal(weights["blocks.0.0.conv_dw.weight"], largest[:, :, 2:5, 2:5])  # identity transforms
    supernet(torch.randn(4, 1, 8, 8)).sum().backward()
    assert supernet.transforms["0_0_7to5"].grad is not None and supernet.transforms["0_0_5to3"].grad.any()
    assert supernet.transforms["1_1_7to5"].grad is None  # a 7x7 kernel uses none

    supernet.choose(small.extremes()[0])
    supernet.eval()
    x = torch.randn(4, 1, 8, 8)
    optimizer = torch.optim.Adam(supernet.parameters())
    supernet(x).sum().backward()
    optimizer.step()
    with torch.no_grad():
        before = supernet(x)
    pwl = supernet.net.blocks[0][0].conv_pwl.weight
    moment = optimizer.state[pwl]["exp_avg"].clone()
    importance = pwl.detach().abs().sum(dim=(0, 2, 3))
    supernet.sort_channels(optimizer)
    order = importance.argsort(descending=True)
    assert torch.equal(pwl.detach().abs().sum(dim=(0, 2, 3)), importance[order])
    assert torch.equal(optimizer.state[pwl]["exp_avg"], moment[:, order])
    with torch.no_grad():
        assert torch.allclose(supernet(x), before, atol=1e-5)
