"""A candidate: one architecture with one compression policy. Torch-free and JSON-able."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

FLOAT_BITS = 32  # "leave this layer in float"


_GENES: list[Any] = []  # cosearch.compressors.genes, once imported


def _genes(scope: str) -> dict[str, Any]:
    if not _GENES:  # imported late: the technique files import core modules themselves
        from cosearch.compressors import genes

        _GENES.append(genes)
    return _GENES[0](scope)


def _checked(scope: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every gene of `scope` with its value (the default where not given), each one checked."""
    genes = _genes(scope)
    for name in given:
        if name not in genes:
            raise ValueError(f"`{name}` is no {scope} compression gene; the genes are {list(genes)}")
    values = {}
    for name, gene in genes.items():
        value = given.get(name, gene.default)
        gene.validate(name, value)
        values[name] = value
    return values


_INTERNED: dict[tuple, LayerPolicy] = {}  # a run has few distinct layer policies: read each once
MAX_INTERNED = 10_000


def _layer_policy(data: Mapping[str, Any]) -> LayerPolicy:
    """`LayerPolicy(data)`, shared between the many slots and candidates that have the same one
    (it is immutable), so reading 100,000 stored results checks each distinct policy once."""
    try:
        key = tuple(sorted(data.items()))
        policy = _INTERNED.get(key)
    except TypeError:  # an unhashable value: checked (and refused) by the constructor
        return LayerPolicy(data)
    if policy is None:
        if len(_INTERNED) >= MAX_INTERNED:
            _INTERNED.clear()
        policy = _INTERNED[key] = LayerPolicy(data)
    return policy


class LayerPolicy(Mapping[str, Any]):
    """How one layer slot is compressed: an immutable mapping of every layer gene to its value.

    `LayerPolicy(GENE=value, ...)` or `LayerPolicy({GENE: value})`; genes not given are off. Values
    read as `policy[GENE]` (or `policy.GENE`). The techniques and their genes are in `cosearch.compressors`.
    """

    __slots__ = ("_hash", "_json", "_values")

    def __init__(self, values: Mapping[str, Any] | None = None, /, **given: Any) -> None:
        object.__setattr__(self, "_values", _checked("layer", {**(values or {}), **given}))
        object.__setattr__(self, "_hash", hash(tuple(self._values.values())))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"LayerPolicy is immutable; use .replace({name}=...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerPolicy) and self._values == other._values

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self):
        return (LayerPolicy, (self._values,))

    def __repr__(self) -> str:
        return f"LayerPolicy({', '.join(f'{k}={v!r}' for k, v in self._values.items())})"

    def replace(self, **changes: Any) -> LayerPolicy:
        return LayerPolicy({**self._values, **changes})

    def to_json(self) -> dict[str, Any]:
        try:
            items = self._json  # immutable, so written once: keys of long runs are taken often
        except AttributeError:
            genes = _genes("layer")
            # Genes at their default are left out, so adding a technique changes no stored key.
            items = tuple((k, v) for k, v in self._values.items() if genes[k].always_written or v != genes[k].default)
            object.__setattr__(self, "_json", items)
        return dict(items)


class Policy:
    """Per-layer compression of a network, keyed by the layer slot names its search space gives,
    plus the network-wide genes in `network`.

    `Policy(layers, GENE=value, ...)`; values read as `policy.network[GENE]` (or `policy.GENE`). Immutable.
    """

    __slots__ = ("layers", "network")

    def __init__(self, layers: Mapping[str, LayerPolicy] | None = None, /, **network: Any) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(sorted((layers or {}).items()))))
        object.__setattr__(self, "network", MappingProxyType(_checked("network", network)))

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "network")[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Policy is immutable")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self.layers == other.layers and self.network == other.network

    def __hash__(self) -> int:
        return hash((tuple(self.layers.items()), tuple(self.network.items())))

    def __reduce__(self):
        return (_policy, (dict(self.layers), dict(self.network)))

    def __repr__(self) -> str:
        return f"Policy({dict(self.layers)!r}, **{dict(self.network)!r})"

    def get(self, slot: str) -> LayerPolicy:
        return self.layers.get(slot, _off())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"layers": {slot: lp.to_json() for slot, lp in self.layers.items()}}
        genes = _genes("network")
        # Written only when used, so the keys of candidates that do not use them stay as they were.
        data.update((k, v) for k, v in self.network.items() if genes[k].always_written or v != genes[k].default)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        layers = {slot: _layer_policy(lp) for slot, lp in data.get("layers", {}).items()}
        network = {k: float(v) for k, v in data.items() if k != "layers"}  # network genes are numbers
        return cls(layers, **network)

    def summary(self) -> str:
        """A short human summary: each technique's phrase (`Compressor.summarize`), in their order."""
        from cosearch.compressors import compressors

        ordered = sorted(compressors().values(), key=lambda c: c.summary_position)
        layers = list(self.layers.values())
        if layers:
            parts = [c.summarize([lp[c.name] for lp in layers]) for c in ordered if c.gene.scope == "layer"]
        else:
            parts = ["float, dense"]
        parts += [c.summarize([self.network[c.name]]) for c in ordered if c.gene.scope == "network"]
        return "; ".join(p for p in parts if p)


def _policy(layers: dict[str, LayerPolicy], network: dict[str, Any]) -> Policy:
    return Policy(layers, **network)


@lru_cache(maxsize=1)
def _off() -> LayerPolicy:
    return LayerPolicy()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Candidate:
    """An architecture (a plain JSON-able mapping) and its compression policy.

    Search spaces hand out candidates in canonical form, so two candidates that compute the
    same function have the same `key`.
    """

    arch: Mapping[str, Any]
    policy: Policy = field(default_factory=Policy)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", MappingProxyType(json.loads(canonical_json(dict(self.arch)))))

    @cached_property  # the key hashes it and the controller sends it to workers: written once
    def json_text(self) -> str:
        """The canonical JSON of `to_json()`: sorted keys, no spaces."""
        return canonical_json(self.to_json())

    @cached_property  # the controller, store and strategies all ask; hashing the JSON is not free
    def key(self) -> str:
        """Stable identity for de-duplication: a hash of the canonical JSON."""
        return hashlib.sha1(self.json_text.encode()).hexdigest()[:16]

    def to_json(self) -> dict[str, Any]:
        return {"arch": dict(self.arch), "policy": self.policy.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        return cls(arch=data["arch"], policy=Policy.from_json(data.get("policy", {})))
