"""Search strategies (ask / tell). Torch-free. Add one with `@STRATEGIES.register(name)`."""

from cosearch.strategies import darts, enas, evolution, gp, nsga2, optuna_samplers, random_search, reinforce  # noqa: F401  (register)
from cosearch.strategies.base import CONTROLLER_ARGS, STRATEGIES, OneShotStrategy, Strategy, Work
from cosearch.strategies.dedup import Deduplicated

__all__ = ["CONTROLLER_ARGS", "STRATEGIES", "Deduplicated", "OneShotStrategy", "Strategy", "Work"]
