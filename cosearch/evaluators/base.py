"""The evaluator contract: a candidate in, a Result (and the trained weights) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from cosearch.core.candidate import Candidate
from cosearch.core.registry import Registry
from cosearch.core.result import Result


@dataclass(frozen=True)
class Evaluation:
    result: Result
    weights: bytes | None = None  # torch-serialised state dict of the deployable (baked) model


class Evaluator(ABC):
    """Evaluates one candidate. Runs inside a Ray worker, so it must pickle and must not raise:
    a candidate that cannot be evaluated is a failed Result."""

    registry_name: str = ""
    evaluates_policy: bool = True  # False: answers by architecture alone (compression is ignored)

    @abstractmethod
    def evaluate(self, candidate: Candidate) -> Evaluation: ...

    @abstractmethod
    def provides(self) -> set[str]:
        """The metrics every ok result carries (e.g. accuracy, latency_ms@local-cpu, size_kb)."""


EVALUATORS: Registry[Evaluator] = Registry("evaluator")
