"""Conformance suites a plug-in inherits, as optuna's `BasicSamplerTestCase` is used.

    # tests/test_my_strategy.py
    from cosearch.testing import StrategySuite

    class TestMyStrategy(StrategySuite):
        name = "my_strategy"  # registered with @STRATEGIES.register("my_strategy")

pytest collects the inherited tests (pytest comes with the `dev` extra; nothing else in cosearch
imports this package). cosearch's own tests run the same suites over every registered space,
strategy, compressor, evaluator and device kind. Add
`pytest.register_assert_rewrite("cosearch.testing")` to a conftest.py for detailed assertion messages.
"""

from cosearch.testing.compressors import CompressorSuite
from cosearch.testing.devices import DeviceSuite
from cosearch.testing.evaluators import EvaluatorSuite
from cosearch.testing.spaces import SearchSpaceSuite
from cosearch.testing.strategies import StrategySuite

__all__ = ["CompressorSuite", "DeviceSuite", "EvaluatorSuite", "SearchSpaceSuite", "StrategySuite"]
