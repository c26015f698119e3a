"""The one exception family of cosearch."""

from __future__ import annotations

from typing import Any


class CosearchError(Exception):
    """Base of every error cosearch raises on purpose."""


class SpecError(CosearchError):
    """A user-given value is not allowed: names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str, problem: str | None = None) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        what = f"got {value!r}" if problem is None else (problem if value is None else f"{problem} (got {value!r})")
        super().__init__(f"{field}: {what}; allowed: {allowed}")


class RunDirError(CosearchError):
    """A path that should be a cosearch run directory is not one."""


class EvaluationError(CosearchError):
    """A candidate could not be evaluated (NaN loss, bad build, ...)."""
