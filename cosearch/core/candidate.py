"""A candidate: one architecture with one compression policy. Torch-free and JSON-able."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

FLOAT_BITS = 32  # "leave this layer in float"


ACTIVATION_BITS = (4, 8, FLOAT_BITS)  # a layer's input: 4 or 8 bits, or float


@dataclass(frozen=True)
class LayerPolicy:
    """How one layer slot is compressed: weight bits (32 = float), unstructured sparsity, and the
    bits of its input activations (32 = float)."""

    weight_bits: int = FLOAT_BITS
    sparsity: float = 0.0
    activation_bits: int = FLOAT_BITS
    rank_ratio: float = 1.0  # low-rank factorisation of linear / 1x1 conv layers; 1 = none
    hash_ratio: float = 1.0  # hashed weight sharing: distinct weights kept per weight; 1 = none

    def __post_init__(self) -> None:
        if isinstance(self.weight_bits, bool) or not isinstance(self.weight_bits, int):
            raise ValueError(f"`weight_bits` must be an int, but got {self.weight_bits!r}")
        if not (2 <= self.weight_bits <= 8 or self.weight_bits == FLOAT_BITS):
            raise ValueError(f"`2 <= weight_bits <= 8 or weight_bits == 32` must hold, but got {self.weight_bits=}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got {self.sparsity=}")
        if isinstance(self.activation_bits, bool) or self.activation_bits not in ACTIVATION_BITS:
            raise ValueError(f"`activation_bits in {ACTIVATION_BITS}` must hold, but got {self.activation_bits=}")
        if not 0.0 < self.rank_ratio <= 1.0:
            raise ValueError(f"`0 < rank_ratio <= 1` must hold, but got {self.rank_ratio=}")
        if not 0.0 < self.hash_ratio <= 1.0:
            raise ValueError(f"`0 < hash_ratio <= 1` must hold, but got {self.hash_ratio=}")

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"weight_bits": self.weight_bits, "sparsity": self.sparsity}
        if self.activation_bits != FLOAT_BITS:  # written only when used: other candidates keep their keys
            data["activation_bits"] = self.activation_bits
        if self.rank_ratio != 1.0:
            data["rank_ratio"] = self.rank_ratio
        if self.hash_ratio != 1.0:
            data["hash_ratio"] = self.hash_ratio
        return data


@dataclass(frozen=True)
class Policy:
    """Per-layer compression of a network, keyed by the layer slot names its search space gives.

    `distill_alpha` is the weight of the teacher's soft labels in the training loss (0: none);
    `channel_ratio` the share of channels structured pruning removes from every prunable layer.
    """

    layers: Mapping[str, LayerPolicy] = field(default_factory=dict)
    distill_alpha: float = 0.0
    channel_ratio: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", MappingProxyType(dict(sorted(self.layers.items()))))
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"`0 <= distill_alpha <= 1` must hold, but got {self.distill_alpha=}")
        if not 0.0 <= self.channel_ratio < 1.0:
            raise ValueError(f"`0 <= channel_ratio < 1` must hold, but got {self.channel_ratio=}")

    def get(self, slot: str) -> LayerPolicy:
        return self.layers.get(slot, LayerPolicy())

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"layers": {slot: lp.to_json() for slot, lp in self.layers.items()}}
        # Written only when used, so the keys of candidates that do not use them stay as they were.
        if self.distill_alpha:
            data["distill_alpha"] = self.distill_alpha
        if self.channel_ratio:
            data["channel_ratio"] = self.channel_ratio
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        layers = {slot: LayerPolicy(**lp) for slot, lp in data.get("layers", {}).items()}
        return cls(layers, float(data.get("distill_alpha", 0.0)), float(data.get("channel_ratio", 0.0)))

    def summary(self) -> str:
        """A short human summary: layers per bit width, mean sparsity, distillation weight."""
        distill = f"; distill {self.distill_alpha:g}" if self.distill_alpha else ""
        distill += f"; channels -{self.channel_ratio:.0%}" if self.channel_ratio else ""
        if not self.layers:
            return "float, dense" + distill
        counts: dict[int, int] = {}
        for lp in self.layers.values():
            counts[lp.weight_bits] = counts.get(lp.weight_bits, 0) + 1
        bits = " ".join(f"{'fp' if b == FLOAT_BITS else 'w' + str(b)}x{n}" for b, n in sorted(counts.items()))
        activations: dict[int, int] = {}
        for lp in self.layers.values():
            if lp.activation_bits != FLOAT_BITS:
                activations[lp.activation_bits] = activations.get(lp.activation_bits, 0) + 1
        if activations:
            bits += "; " + " ".join(f"a{b}x{n}" for b, n in sorted(activations.items()))
        ranks = [lp.rank_ratio for lp in self.layers.values() if lp.rank_ratio != 1.0]
        if ranks:
            bits += f"; low-rank x{len(ranks)} (mean ratio {sum(ranks) / len(ranks):.2f})"
        hashed = [lp.hash_ratio for lp in self.layers.values() if lp.hash_ratio != 1.0]
        if hashed:
            bits += f"; hashed x{len(hashed)} (mean ratio {sum(hashed) / len(hashed):.2f})"
        mean_sparsity = sum(lp.sparsity for lp in self.layers.values()) / len(self.layers)
        return f"{bits}; sparsity {mean_sparsity:.2f}{distill}"


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
