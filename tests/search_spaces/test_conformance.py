"""Every registered search space passes `cosearch.testing.SearchSpaceSuite` (add a small config here for a new one)."""

from __future__ import annotations

import pytest

from cosearch.search_spaces import SEARCH_SPACES
from cosearch.testing import SearchSpaceSuite

SMALL = {
    "nb201": {"channels": 4, "cells_per_stage": 1},
    "darts": {"channels": 4, "layers": 3},
    "enas": {"channels": 4, "layers": 6},
    "mobilenet": {"stage_channels": [8, 16], "stage_strides": [1, 2], "depths": [1, 2], "head_channels": 32},
    "timm": {"model": "resnet18"},
    "module": {"factory": "cosearch.testing.models:small_cnn"},
}
BAD_ARCH = {
    "nb201": {"cell": "|nor_conv_3x3~0|+|conv_9x9~0|none~1|+|none~0|none~1|none~2|"},
    "darts": {
        "genotype": "Genotype(normal=[('sep_conv_3x3', 7)], normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5])"
    },
    "enas": {"ops": ["conv_3x3"] * 5 + ["conv_7x7"], "skips": [[]] * 6},
    "mobilenet": {"width": 1.0, "stages": [[{"kernel": 9, "expand": 4}], [{"kernel": 3, "expand": 4}]]},
    "timm": {"model": "resnet34"},
    "module": {"model": "other:factory"},
}
NAMES = SEARCH_SPACES.names()


def test_every_space_has_a_small_config():
    assert sorted(SMALL) == NAMES and sorted(BAD_ARCH) == NAMES


class TestEverySpace(SearchSpaceSuite):
    @pytest.fixture(params=NAMES)
    def space_name(self, request) -> str:
        return request.param

    @pytest.fixture
    def space_params(self, space_name):
        return SMALL[space_name]

    @pytest.fixture
    def space_bad_arch(self, space_name):
        return BAD_ARCH[space_name]
