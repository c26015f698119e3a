"""Random search: every decision drawn uniformly. The baseline every other strategy must beat."""

from __future__ import annotations

from cosearch.core.candidate import Candidate
from cosearch.core.result import Result
from cosearch.strategies.base import STRATEGIES, Strategy


@STRATEGIES.register("random")
class RandomSearch(Strategy):
    def ask(self) -> Candidate:
        return self.space.decode(self.space.sample(self.rng))

    def tell(self, candidate: Candidate, result: Result) -> None:
        pass  # random search learns nothing
