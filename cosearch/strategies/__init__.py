"""Search strategies (ask / tell). Torch-free. Add one with `@STRATEGIES.register(name)`."""

from cosearch.strategies import evolution, nsga2, random_search  # noqa: F401  (register)
from cosearch.strategies.base import CONTROLLER_ARGS, STRATEGIES, Strategy

__all__ = ["CONTROLLER_ARGS", "STRATEGIES", "Strategy"]
