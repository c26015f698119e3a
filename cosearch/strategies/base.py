"""The strategy contract: ask / tell / state_dict / load_state_dict, over torch-free candidates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosearch.core.candidate import Candidate
from cosearch.core.objectives import Goals
from cosearch.core.registry import Registry
from cosearch.core.result import Result
from cosearch.search_spaces.base import JointSpace

# Arguments the controller passes itself; everything else a strategy takes is set in the job file.
CONTROLLER_ARGS = ("space", "goals", "seed")


@dataclass(frozen=True)
class Work:
    """Work a strategy needs done before it can propose (a one-shot search over shared weights):
    the controller runs `function` ("module:name", imported in a Ray worker, so the strategy
    itself stays torch-free) as `function(evaluator, **args)`, stores what it returns (JSON-able)
    under `key`, and hands it to `Strategy.worked`; a resumed run hands stored work back."""

    key: str
    function: str
    args: dict[str, Any] = field(default_factory=dict)
    description: str = ""


class Strategy(ABC):
    """Proposes candidates and learns from their results.

    A strategy may be asked several times before it is told anything (evaluations run in
    parallel), may be told results of candidates it never asked for (a resumed run replays
    them), and must give the same continuation after `load_state_dict(state_dict())` (with the
    same `known` keys). Its state should stay bounded as a run grows: the run store holds the
    history, and `known` says what not to propose again.
    """

    registry_name: str = ""
    needs_data = False  # its `Work` trains on the job's data, through the evaluator's (see build.check)

    def __init__(self, space: JointSpace, goals: Goals, seed: int = 0) -> None:
        self.space = space
        self.goals = goals
        self.rng = np.random.default_rng(seed)
        # Keys its driver already has stored, running or asked for (`Deduplicated` sets it). The
        # driver keeps them, not the strategy, so a strategy's state stays bounded as a run grows.
        self.known: Container[str] = frozenset()

    @abstractmethod
    def ask(self) -> Candidate:
        """The next candidate to evaluate."""

    @abstractmethod
    def tell(self, candidate: Candidate, result: Result) -> None:
        """The result of evaluating `candidate`."""

    def first_new(self, propose: Callable[[], Candidate], tries: int = 50) -> Candidate:
        """The first proposal whose key is not `known`; after `tries` attempts, the last one."""
        for _ in range(tries):
            candidate = propose()
            if candidate.key not in self.known:
                break
        return candidate

    def work(self) -> list[Work]:
        """Work still needed before the next ask (most strategies: none). Asked again after each
        piece is handed back, until it is empty."""
        return []

    def worked(self, key: str, output: Any) -> None:
        """The stored output of the `Work` named `key`."""
        raise NotImplementedError(f"{type(self).__name__} asked for no work")

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; JSON-able."""
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]


STRATEGIES: Registry[Strategy] = Registry("strategy")


class OneShotStrategy(Strategy):
    """A strategy whose `Work` (a search over shared weights) yields candidates to ask first
    (`self.to_ask`, genomes); every ask after them, and every tell, goes to `self.then`, the
    strategy it continues as (set by the subclass)."""

    needs_data = True
    then: Strategy

    def __init__(self, space: JointSpace, goals: Goals, seed: int = 0) -> None:
        super().__init__(space, goals, seed)
        self.to_ask: list[dict[str, Any]] = []

    def ask(self) -> Candidate:
        while self.to_ask:
            candidate = self.space.decode(self.to_ask.pop(0))
            if candidate.key not in self.known:
                return candidate
        self.then.known = self.known
        return self.then.ask()

    def tell(self, candidate: Candidate, result: Result) -> None:
        self.then.tell(candidate, result)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "to_ask": self.to_ask, "then": self.then.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.to_ask = [dict(g) for g in state["to_ask"]]
        self.then.load_state_dict(state["then"])
