"""Objectives and budgets (constraints) over a result's metrics."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from cosearch.core.errors import SpecError
from cosearch.core.result import Result

Direction = Literal["min", "max"]

DEFAULT_DEVICE = "local-cpu"
# Base metrics and their natural direction. Device-bound metrics are stored as "latency_ms@DEVICE".
METRIC_DIRECTIONS: dict[str, Direction] = {
    "accuracy": "max",
    "latency_ms": "min",
    "size_kb": "min",
    "bitops": "min",  # MACs x weight bits x activation bits, summed over layers
    "energy_mj": "min",
}
DEVICE_METRICS = ("latency_ms", "energy_mj")


def resolve_metric(name: str, field: str = "metric") -> str:
    """Normalise a metric name: `latency_ms` means `latency_ms@local-cpu`; unknown names raise."""
    base, _, device = name.partition("@")
    if base not in METRIC_DIRECTIONS:
        raise SpecError(field, name, f"one of {sorted(METRIC_DIRECTIONS)} (device metrics as latency_ms@DEVICE)")
    if base == "energy_mj" and not device:
        raise SpecError(field, name, "energy_mj@DEVICE, naming an analytic device (energy is a device's)")
    if base in DEVICE_METRICS:
        return f"{base}@{device or DEFAULT_DEVICE}"
    if device:
        raise SpecError(field, name, f"{base!r} does not depend on a device; write it without '@'")
    return base


def base_metric(name: str) -> str:
    return name.partition("@")[0]


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction

    @classmethod
    def parse(cls, name: str, field: str = "objectives") -> Objective:
        metric = resolve_metric(name, field)
        return cls(metric, METRIC_DIRECTIONS[base_metric(metric)])

    def __str__(self) -> str:
        return f"{self.metric} ({self.direction})"


_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w@.\-]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    """A budget such as `latency_ms@local-cpu <= 2.0` or `accuracy >= 0.9`."""

    metric: str
    op: Literal["<=", ">="]
    bound: float

    @classmethod
    def parse(cls, text: str, field: str = "budgets") -> Constraint:
        match = _CONSTRAINT.match(str(text))
        if not match:
            raise SpecError(field, text, "'METRIC <= NUMBER' or 'METRIC >= NUMBER', e.g. 'latency_ms <= 2.0'")
        name, op, number = match.groups()
        metric = resolve_metric(name, field)
        try:
            bound = float(number)
        except ValueError:
            raise SpecError(field, text, "a number after the comparison") from None
        if not math.isfinite(bound) or (base_metric(metric) != "accuracy" and bound <= 0):
            raise SpecError(field, text, f"a positive finite bound for {base_metric(metric)}")
        if base_metric(metric) == "accuracy" and not 0 <= bound <= 1:
            raise SpecError(field, text, "an accuracy bound between 0 and 1")
        return cls(metric, op, bound)  # type: ignore[arg-type]

    def violation(self, value: float) -> float:
        """0 when met, else the relative amount by which it is broken."""
        excess = value - self.bound if self.op == "<=" else self.bound - value
        return max(0.0, excess) / max(abs(self.bound), 1e-12)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


@dataclass(frozen=True)
class Goals:
    """What a search optimises (objectives) under which budgets (constraints)."""

    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = ()

    @property
    def metrics(self) -> list[str]:
        return sorted({o.metric for o in self.objectives} | {c.metric for c in self.constraints})

    def minimization_vector(self, result: Result) -> np.ndarray:
        """Objective values with maximised ones negated; +inf for a result without metrics."""
        out = np.full(len(self.objectives), np.inf)
        if result.status == "failed":
            return out
        for i, objective in enumerate(self.objectives):
            value = result.metrics.get(objective.metric)
            if value is not None:
                out[i] = -value if objective.direction == "max" else value
        return out

    def violation(self, result: Result) -> float:
        """Total relative budget violation; inf for a failed result."""
        if result.status == "failed":
            return math.inf
        total = 0.0
        for constraint in self.constraints:
            value = result.metrics.get(constraint.metric)
            total += math.inf if value is None else constraint.violation(value)
        return total

    def feasible(self, result: Result) -> bool:
        return result.status == "ok" and self.violation(result) == 0.0

    def arrays(self, results: Sequence[Result]) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([self.minimization_vector(r) for r in results]).reshape(len(results), len(self.objectives))
        violations = np.array([self.violation(r) for r in results], dtype=float)
        return values, violations
