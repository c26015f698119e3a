"""Evaluators: own the training, compression and measurement of one candidate."""

from cosearch.evaluators import supernet, synthetic, table, train  # noqa: F401  (register)
from cosearch.evaluators.base import EVALUATORS, Evaluation, Evaluator

__all__ = ["EVALUATORS", "Evaluation", "Evaluator"]
