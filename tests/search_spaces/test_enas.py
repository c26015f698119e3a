from __future__ import annotations

import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

SPACE = SEARCH_SPACES.create("enas", channels=4, layers=6)
ARCH = {
    "ops": ["conv_3x3", "sep_conv_5x5", "max_pool_3x3", "conv_5x5", "avg_pool_3x3", "sep_conv_3x3"],
    "skips": [[], [], [0], [0, 1], [], [2, 3]],
}


def test_sample_round_trip_and_slots():
    assert SPACE.arch_from_sample(SPACE.sample_from_arch(ARCH)) == ARCH
    assert SPACE.layer_slots(ARCH) == ["stem.conv", "layers.0", "layers.1", "layers.3", "layers.5", "classifier"]
    assert JointSpace(SPACE).canonical(ARCH, {}).arch["ops"] == ARCH["ops"]
    assert SPACE.describe(ARCH).startswith("conv_3x3 > sep_conv_5x5 > max_pool_3x3+[0]")


def test_skips_reach_across_pooling():
    torch = pytest.importorskip("torch")
    arch = {"ops": ["conv_3x3"] * 6, "skips": [[], [], [0], [0, 1], [0, 2], [0, 1, 2, 3]]}
    model = SPACE.build(arch, (1, 8, 8), 10)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize(
    "arch, fragment",
    [
        ({"ops": ["conv_3x3"] * 5, "skips": [[]] * 5}, "arch.ops"),
        ({"ops": ["conv_3x3"] * 6, "skips": [[], [], [1], [], [], []]}, r"arch.skips\[2\]"),
        ({"ops": ["conv_3x3"] * 6, "skips": [[], [], [], [1, 0], [], []]}, "sorted"),
        ({"ops": ["conv_3x3"] * 6}, "keys"),
    ],
)
def test_bad_archs(arch, fragment):
    with pytest.raises(SpecError, match=fragment):
        SPACE.validate_arch(arch)
