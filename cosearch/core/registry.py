"""One registry per kind of component: duplicate names raise, unknown names list the valid ones."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from types import UnionType
from typing import Any, Generic, TypeVar

from cosearch.core.errors import SpecError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a name to a class or factory; `create` checks keyword arguments against its signature."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = factory
            factory.registry_name = name  # type: ignore[attr-defined]
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def in_order(self) -> list[str]:
        """Names in the order they were registered."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str) -> Callable[..., T]:
        try:
            return self._entries[name]
        except KeyError:
            raise SpecError(self.kind, name, f"one of {self.names()}") from None

    def parameters(self, name: str, skip: tuple[str, ...] = ()) -> dict[str, inspect.Parameter]:
        """The keyword parameters a user may set for `name` (those not supplied by cosearch itself)."""
        signature = inspect.signature(self.get(name))
        return {
            key: param
            for key, param in signature.parameters.items()
            if key not in skip and key != "self" and param.kind is not inspect.Parameter.VAR_KEYWORD
        }

    def check_params(self, name: str, params: dict[str, Any], field: str, skip: tuple[str, ...] = ()) -> None:
        """Raise SpecError for a keyword argument that `name` does not take (never drop it silently),
        or whose value is not of the type its signature declares (checked strictly: "5" is no int).
        Ranges are the component's own to check, in its constructor."""
        allowed = self.parameters(name, skip)
        hints = _type_hints(self.get(name))
        for key, value in params.items():
            if key not in allowed:
                raise SpecError(f"{field}.{key}", value, f"parameters of {self.kind} {name!r}: {sorted(allowed)}")
            annotation = hints.get(key)
            if annotation is not None and not _fits(annotation, value):
                allowed_text = (
                    "one of " + ", ".join(map(repr, typing.get_args(annotation)))
                    if typing.get_origin(annotation) is typing.Literal
                    else f"a value of type {_type_name(annotation)}"
                )
                raise SpecError(f"{field}.{key}", value, f"{allowed_text} ({self.kind} {name!r} parameter)")

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        """`name` built with these arguments, each keyword first checked against the range its
        signature declares: `population_size: Annotated[int, Field(ge=2)]` raises ValueError
        "`population_size >= 2` must hold, but got population_size=1" (the job names the field)."""
        factory = self.get(name)
        hints = _type_hints(factory, extras=True)
        for key, value in kwargs.items():
            rule = _rule(key, hints.get(key))
            if rule is not None and not _fits(hints[key], value):
                raise ValueError(f"`{rule}` must hold, but got {key}={value!r}")
        return factory(*args, **kwargs)


def _type_hints(factory: Callable[..., Any], extras: bool = False) -> dict[str, Any]:
    try:
        return typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory, include_extras=extras)
    except Exception:  # noqa: BLE001 - an unresolvable annotation only means no type check
        return {}


_BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def _rule(key: str, annotation: Any) -> str | None:
    """`0.5 <= key <= 1` from the `Field` / annotated-types bounds of an `Annotated` hint (also
    inside `X | None`, where None passes); None when the hint declares no bounds."""
    union = typing.get_origin(annotation) in (typing.Union, UnionType)
    for member in typing.get_args(annotation) if union else (annotation,):
        if typing.get_origin(member) is not typing.Annotated:
            continue
        bounds: dict[str, Any] = {}
        for meta in typing.get_args(member)[1:]:
            for item in (meta, *getattr(meta, "metadata", ())):  # a pydantic Field keeps them in .metadata
                bounds.update({b: getattr(item, b) for b in _BOUNDS if getattr(item, b, None) is not None})
        lower = next(((b, bounds[b]) for b in ("ge", "gt") if b in bounds), None)
        upper = next(((b, bounds[b]) for b in ("le", "lt") if b in bounds), None)
        if lower and upper:
            flipped = {"ge": "<=", "gt": "<"}[lower[0]]
            return f"{_number(lower[1])} {flipped} {key} {_BOUNDS[upper[0]]} {_number(upper[1])}"
        if lower or upper:
            bound, value = lower or upper
            return f"{key} {_BOUNDS[bound]} {_number(value)}"
    return None


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fits(annotation: Any, value: Any) -> bool:
    from pydantic import TypeAdapter, ValidationError

    try:
        TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        return False
    except Exception:  # noqa: BLE001 - a type pydantic cannot check (a class of ours): the component checks
        return True
    return True


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if not typing.get_args(annotation) else None
    return text or str(annotation).replace("typing.", "")
