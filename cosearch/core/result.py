"""The outcome of evaluating one candidate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cosearch.core.candidate import Candidate

Status = Literal["ok", "failed", "infeasible"]
STATUSES: tuple[str, ...] = ("ok", "failed", "infeasible")


@dataclass(frozen=True)
class Result:
    """Metrics of a candidate, or why it has none.

    `status`: "ok" (trained and measured), "failed" (raised, or its loss became NaN; `error`
    says why) or "infeasible" (known to break a budget before training, never trained).
    `timings_s` holds wall-clock seconds per stage, `measured` how each metric was obtained.
    """

    candidate: Candidate
    status: Status
    metrics: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    timings_s: Mapping[str, float] = field(default_factory=dict)
    measured: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"`status` must be one of {STATUSES}, but got {self.status!r}")
        bad = {k: v for k, v in self.metrics.items() if not isinstance(v, (int, float)) or math.isnan(v)}
        if self.status == "ok" and bad:
            raise ValueError(f"an ok result needs finite numeric metrics, but got {bad}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "candidate": self.candidate.to_json(),
            "status": self.status,
            "metrics": dict(self.metrics),
            "error": self.error,
            "timings_s": dict(self.timings_s),
            "measured": dict(self.measured),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], candidate: Candidate | None = None) -> Result:
        """`candidate`: the one `data` was written for, when the caller holds it (saves rebuilding it)."""
        return cls(
            candidate=candidate if candidate is not None else Candidate.from_json(data["candidate"]),
            status=data["status"],
            metrics=data.get("metrics", {}),
            error=data.get("error"),
            timings_s=data.get("timings_s", {}),
            measured=data.get("measured", {}),
        )

    @classmethod
    def failed(cls, candidate: Candidate, error: str, timings_s: Mapping[str, float] | None = None) -> Result:
        return cls(candidate=candidate, status="failed", error=error, timings_s=timings_s or {})
