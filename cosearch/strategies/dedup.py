"""Repeated proposals, filtered once for every strategy (the shape of NNI's Deduplication middleware).

A strategy may propose a candidate it (or an earlier run) already had answered. `Deduplicated`
asks again instead of evaluating it twice: a repeat of an answered candidate is told that answer
again, so the strategy learns it is known; a repeat of one still being evaluated is skipped.
The controller and the benchmarks drive every strategy through it.
"""

from __future__ import annotations

from collections.abc import Container, MutableMapping, Sequence

from cosearch.core.candidate import Candidate
from cosearch.core.result import Result
from cosearch.strategies.base import Strategy


class Deduplicated:
    """`strategy`, asked until it proposes a candidate not in `answered` (key -> result, shared
    with the caller, which may fill it too) nor busy. `repeats` counts the proposals filtered.

    It is also the strategy's `known`: the keys answered or busy, which the strategy's own
    retries avoid, so no strategy keeps a growing set of its own."""

    def __init__(self, strategy: Strategy, answered: MutableMapping[str, Result] | None = None) -> None:
        self.strategy = strategy
        self.answered: MutableMapping[str, Result] = {} if answered is None else answered
        self.repeats = 0
        self._busy: Sequence[Container[str]] = ()
        strategy.known = self

    def __contains__(self, key: object) -> bool:
        return key in self.answered or any(key in keys for keys in self._busy)

    def ask(self, busy: Sequence[Container[str]] = (), max_repeats: int = 20) -> Candidate | None:
        """A candidate to evaluate (its key in none of the `busy` collections), or None when
        `max_repeats` proposals in a row were repeats."""
        self._busy = busy
        for _ in range(max_repeats):
            candidate = self.strategy.ask()
            known = self.answered.get(candidate.key)
            running = known is None and any(candidate.key in keys for keys in busy)
            self.repeats += known is not None or running
            if known is not None:
                self.strategy.tell(candidate, known)
            elif not running:
                return candidate
        return None

    def tell(self, candidate: Candidate, result: Result) -> None:
        self.answered[candidate.key] = result
        self.strategy.tell(candidate, result)
