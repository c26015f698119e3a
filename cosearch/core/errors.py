"""The one exception family of cosearch."""

from __future__ import annotations

from typing import Any


class CosearchError(Exception):
    """Base of every error cosearch raises on purpose."""


class SpecError(CosearchError):
    """A user-given value is not allowed: names the field, the value and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str, problem: str | None = None) -> None:
        self.field, self.value, self.allowed = field, value, allowed
        shown = _short(repr(value))
        what = f"got {shown}" if problem is None else (problem if value is None else f"{problem} (got {shown})")
        super().__init__(f"{_short(field)}: {what}; allowed: {_short(allowed, 2 * MAX_VALUE_CHARS)}")


MAX_VALUE_CHARS = 300  # a value echoed back in a message is cut to this: what matters is field and rule


def _short(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[: limit - 40]}... ({len(text)} characters in all)"


class RunDirError(CosearchError):
    """A path that should be a cosearch run directory is not one."""


class RunFailed(CosearchError):
    """A step the whole run depends on failed (its supernet diverged): the run is marked failed."""


class EvaluationError(CosearchError):
    """A candidate could not be evaluated (NaN loss, bad build, ...)."""
