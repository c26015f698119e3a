"""The evaluator contract: a candidate in, a Result (and the trained weights) out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

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
    # What the run hands the constructor besides `space`, by keyword; one of `cosearch.build.RUN_INPUTS` each.
    needs: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def evaluate(self, candidate: Candidate) -> Evaluation: ...

    finalizes: ClassVar[bool] = False  # True: `final_evaluator` trains a search's picks standalone (job.finalize)

    def final_evaluator(self, finalize: Any) -> Evaluator:
        """The evaluator that trains this run's picks as the job's `finalize` section says."""
        raise NotImplementedError(f"the {self.registry_name!r} evaluator has no final training")

    @classmethod
    def check_job(cls, job: Any) -> None:
        """Raise SpecError for what in the job (a `JobSpec`) this evaluator cannot do."""
        return None

    @abstractmethod
    def provides(self) -> set[str]:
        """The metrics every ok result carries (e.g. accuracy, latency_ms@local-cpu, size_kb)."""

    def route(self, device: str, measure: Callable[..., dict[str, Any]]) -> None:
        """Measure `device` with `measure(profile, onnx_bytes, input_shape)` (it lives on another
        node). Only an evaluator that needs "devices" is asked to."""
        raise NotImplementedError(f"the {self.registry_name!r} evaluator measures no devices")


EVALUATORS: Registry[Evaluator] = Registry("evaluator")
