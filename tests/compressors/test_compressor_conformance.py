"""Every registered compression technique passes `cosearch.testing.CompressorSuite` (add its values here)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from cosearch.compressors import COMPRESSORS
from cosearch.testing import CompressorSuite

# name -> (allowed non-default values, mildest first; values the gene refuses)
VALUES = {
    "weight_bits": ((8, 6, 4, 2), (1, 9, 16, 33)),
    "activation_bits": ((8, 4), (2, 6, 16)),
    "sparsity": ((0.25, 0.5, 0.9), (-0.1, 1.0)),
    "channel_ratio": ((0.25, 0.5), (-0.1, 0.95)),
    "rank_ratio": ((0.75, 0.5, 0.25), (0.0, 1.5)),
    "hash_ratio": ((0.5, 0.25), (0.0, 1.5)),
    "distill_alpha": ((0.5, 1.0), (-0.5, 1.5)),
}
NAMES = COMPRESSORS.names()


def test_every_technique_has_values():
    assert sorted(VALUES) == NAMES


class TestEveryCompressor(CompressorSuite):
    @pytest.fixture(params=NAMES)
    def compressor_name(self, request) -> str:
        return request.param

    @pytest.fixture
    def compressor_values(self, compressor_name):
        return VALUES[compressor_name][0]

    @pytest.fixture
    def compressor_bad_values(self, compressor_name):
        return VALUES[compressor_name][1]
