"""The conformance suites used as a plug-in author would: a class that sets attributes, no fixtures."""

from __future__ import annotations

from typing import ClassVar

from cosearch.testing import CompressorSuite, SearchSpaceSuite, StrategySuite


class TestRandomSearchAsAPlugin(StrategySuite):
    name = "random"
    learns = False


class TestNB201AsAPlugin(SearchSpaceSuite):
    name = "nb201"
    params: ClassVar = {"channels": 4, "cells_per_stage": 1}
    bad_arch: ClassVar = {"cell": "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|"}


class TestSparsityAsAPlugin(CompressorSuite):
    name = "sparsity"
    values = (0.5,)
    bad_values = (1.0,)


def test_a_suite_without_its_attributes_fails_loudly():
    import pytest

    suite = CompressorSuite()
    with pytest.raises(AssertionError):
        suite.test_bad_values_name_the_rule_and_the_value(None, ())
