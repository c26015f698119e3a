"""A torch-free stand-in evaluator: metrics from a candidate's genome, in microseconds.

For exercising controllers and strategies (tests, overhead benchmarks) without training.
Its numbers mean nothing about real networks; `fail_rate` injects failures on purpose.
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from pydantic import Field

from cosearch.compressors.base import layer_precision, zeroed_share
from cosearch.core.candidate import FLOAT_BITS, Candidate
from cosearch.core.errors import SpecError
from cosearch.core.objectives import DEFAULT_DEVICE
from cosearch.core.result import Result
from cosearch.evaluators.base import EVALUATORS, Evaluation, Evaluator
from cosearch.search_spaces.base import SearchSpace


@EVALUATORS.register("synthetic")
class SyntheticEvaluator(Evaluator):
    def __init__(
        self,
        space: SearchSpace,
        fail_rate: Annotated[float, Field(ge=0, le=1)] = 0.0,
        delay_s: Annotated[float, Field(ge=0)] = 0.0,  # NaN fails the bound too
        device: str = DEFAULT_DEVICE,
    ) -> None:
        self.space, self.fail_rate, self.delay_s, self.device = space, fail_rate, delay_s, device

    def provides(self) -> set[str]:
        return {"accuracy", f"latency_ms@{self.device}", "size_kb"}

    def evaluate(self, candidate: Candidate) -> Evaluation:
        rng = np.random.default_rng(int(candidate.key, 16))
        if self.delay_s:
            time.sleep(self.delay_s)
        if rng.random() < self.fail_rate:
            return Evaluation(Result.failed(candidate, "SyntheticFailure: injected by fail_rate"))
        try:
            self.space.validate_arch(candidate.arch)
        except SpecError as error:  # another space's candidate (a replayed run): a failed result, not a raise
            return Evaluation(Result.failed(candidate, f"SpecError: {error}"))
        slots = self.space.layer_slots(candidate.arch)
        # Through the techniques' declarations, not gene names: the widths layers run at and the
        # share of weights set to zero.
        bits = [layer_precision(candidate.policy.get(s)).weights for s in slots]
        zeroed = [zeroed_share(candidate.policy.get(s)) for s in slots]
        capacity = len(slots) / max(1, len(self.space.all_slots()))
        precision = float(np.mean([min(b, 8) / 8 for b in bits])) if bits else 1.0
        accuracy = 0.5 + 0.3 * capacity + 0.15 * precision - 0.15 * float(np.mean(zeroed or [0])) + 0.005 * rng.random()
        latency_ms = 0.2 + 1.5 * capacity + 0.05 * rng.random()
        size_kb = sum(b * (1 - s) for b, s in zip(bits, zeroed)) / FLOAT_BITS
        metrics = {"accuracy": accuracy, f"latency_ms@{self.device}": latency_ms, "size_kb": size_kb}
        return Evaluation(Result(candidate, "ok", metrics, measured={"all": {"how": "synthetic"}}))
