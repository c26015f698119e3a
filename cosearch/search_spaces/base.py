"""What a search space is, and the joint (architecture x compression) genome built over one.

Everything here is torch-free: a space describes its choices, samples, mutates, encodes and
canonicalises candidates on plain Python data. Only `build` touches torch, lazily.
"""

from __future__ import annotations

import itertools
import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cosearch.core.candidate import FLOAT_BITS, Candidate, LayerPolicy, Policy, canonical_json
from cosearch.core.errors import SpecError
from cosearch.core.registry import Registry

Sample = dict[str, Any]  # decision name -> chosen option; what strategies see


@dataclass(frozen=True)
class Choice:
    """One categorical decision of a genome. `group` lets mutation balance arch and policy genes."""

    name: str
    options: tuple[Any, ...]
    group: str = "arch"

    def __post_init__(self) -> None:
        if len(self.options) == 0:
            raise ValueError(f"choice {self.name!r} needs at least one option")


@dataclass(frozen=True)
class Form:
    """One way of writing the same network: an arch and where each layer slot moved to."""

    arch: Mapping[str, Any]
    slot_map: Mapping[str, str]  # slot in the original arch -> slot in this form


class SearchSpace(ABC):
    """An architecture space. Subclasses register with `@SEARCH_SPACES.register(name)`."""

    registry_name: str = ""

    @abstractmethod
    def choices(self) -> list[Choice]:
        """The architecture decisions, in a fixed order."""

    @abstractmethod
    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """The (not yet canonical) arch mapping that a sample of `choices()` describes."""

    @abstractmethod
    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        """Inverse of `arch_from_sample`."""

    @abstractmethod
    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        """Raise SpecError naming what is wrong with `arch`."""

    @abstractmethod
    def all_slots(self) -> list[str]:
        """Every layer slot any arch of this space can have (the policy genome)."""

    @abstractmethod
    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        """The slots (conv / linear layers with weights) that `arch` really has."""

    @abstractmethod
    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        """The canonical arch of the network `arch` computes, once per way of mapping its slots.

        Every returned form has the same arch: the space's canonical one among all equivalent
        writings (dead parts removed, relabelings); there are several only when the canonical
        arch has symmetries, and then the policy decides (JointSpace.canonical)."""

    @abstractmethod
    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        """An `nn.Module` whose conv / linear modules are named by `layer_slots(arch)`."""

    def describe(self, arch: Mapping[str, Any]) -> str:
        """A short human-readable form of `arch`."""
        return canonical_json(dict(arch))


SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")


@lru_cache(maxsize=4096)
def _layer_policy(
    weight_bits: int, sparsity: float, activation_bits: int, rank_ratio: float, hash_ratio: float
) -> LayerPolicy:
    """Shared, immutable layer policies: a decode builds one per slot, hundreds per candidate."""
    return LayerPolicy(weight_bits, sparsity, activation_bits, rank_ratio, hash_ratio)


class JointSpace:
    """The joint genome: architecture choices plus weight bits and sparsity per layer slot."""

    def __init__(
        self,
        space: SearchSpace,
        weight_bits: Sequence[int] = (4, 8, FLOAT_BITS),
        sparsity: Sequence[float] = (0.0, 0.25, 0.5, 0.75),
        distill_alpha: Sequence[float] = (0.0,),
        channel_ratio: Sequence[float] = (0.0,),
        activation_bits: Sequence[int] = (FLOAT_BITS,),
        rank_ratio: Sequence[float] = (1.0,),
        hash_ratio: Sequence[float] = (1.0,),
    ) -> None:
        for bits in weight_bits:
            LayerPolicy(weight_bits=bits)  # validates
        for bits in activation_bits:
            LayerPolicy(activation_bits=bits)
        for ratio in rank_ratio:
            LayerPolicy(rank_ratio=ratio)
        for ratio in hash_ratio:
            LayerPolicy(hash_ratio=ratio)
        for amount in sparsity:
            LayerPolicy(sparsity=amount)
        for alpha in distill_alpha:
            Policy(distill_alpha=alpha)
        for ratio in channel_ratio:
            Policy(channel_ratio=ratio)
        self.space = space
        self.weight_bits = tuple(weight_bits)
        self.sparsity = tuple(float(s) for s in sparsity)
        self.distill_alpha = tuple(float(a) for a in distill_alpha)
        self.channel_ratio = tuple(float(r) for r in channel_ratio)
        self.activation_bits = tuple(activation_bits)
        self.rank_ratio = tuple(float(r) for r in rank_ratio)
        self.hash_ratio = tuple(float(r) for r in hash_ratio)
        self._choices = list(space.choices())
        self._choices.append(Choice("distill_alpha", self.distill_alpha, group="distill"))
        self._choices.append(Choice("channel_ratio", self.channel_ratio, group="channels"))
        for slot in space.all_slots():
            self._choices.append(Choice(f"bits:{slot}", self.weight_bits, group="bits"))
            self._choices.append(Choice(f"sparsity:{slot}", self.sparsity, group="sparsity"))
            if self.activation_bits != (FLOAT_BITS,):  # only then a gene, so genomes without it stay as they were
                self._choices.append(Choice(f"abits:{slot}", self.activation_bits, group="activation_bits"))
            if self.rank_ratio != (1.0,):
                self._choices.append(Choice(f"rank:{slot}", self.rank_ratio, group="rank"))
            if self.hash_ratio != (1.0,):
                self._choices.append(Choice(f"hash:{slot}", self.hash_ratio, group="hash"))
        self._by_name = {c.name: c for c in self._choices}
        self._options = {c.name: c.options for c in self._choices}
        # Per slot the names of its genes (None: not a gene, the default applies); built once, as
        # decode reads them for every layer of every candidate.
        self._slot_genes = {
            slot: (
                f"bits:{slot}",
                f"sparsity:{slot}",
                *(f"{p}:{slot}" if f"{p}:{slot}" in self._by_name else None for p in ("abits", "rank", "hash")),
            )
            for slot in space.all_slots()
        }
        self._sizes = np.array([len(c.options) for c in self._choices])
        self._groups = sorted({c.group for c in self._choices if len(c.options) > 1})

    def choices(self) -> list[Choice]:
        return list(self._choices)

    def sample(self, rng: np.random.Generator) -> Sample:
        picks = rng.integers(0, self._sizes).tolist()  # one draw for all decisions: genomes have hundreds
        return dict(zip(self._options, map(operator.getitem, self._options.values(), picks)))

    def mutate(self, sample: Mapping[str, Any], rng: np.random.Generator) -> Sample:
        """Change one decision to another of its options; the group is drawn first, uniformly."""
        child = dict(sample)
        if not self._groups:
            return child
        group = self._groups[int(rng.integers(len(self._groups)))]
        names = [c.name for c in self._choices if c.group == group and len(c.options) > 1]
        choice = self._by_name[names[int(rng.integers(len(names)))]]
        others = [o for o in choice.options if o != child[choice.name]]
        child[choice.name] = others[int(rng.integers(len(others)))]
        return child

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator) -> Sample:
        """Uniform crossover: each decision from either parent with equal chance."""
        take_a = rng.random(len(self._choices)) < 0.5
        return {c.name: (a if pick else b)[c.name] for c, pick in zip(self._choices, take_a)}

    def decode(self, sample: Mapping[str, Any]) -> Candidate:
        """The canonical candidate a sample describes."""
        if not self._by_name.keys() <= sample.keys():
            missing = [c.name for c in self._choices if c.name not in sample]
            raise SpecError("sample", missing[:3], "a value for every decision of the space")
        options = self._options
        # Every value one of its decision's options, checked in C (genomes have hundreds of decisions).
        if not all(map(operator.contains, map(options.get, sample.keys(), itertools.repeat(())), sample.values())):
            for name, value in sample.items():
                if name not in options:
                    raise SpecError("sample", name, f"decisions of this space, e.g. {list(options)[:3]}")
                if value not in options[name]:
                    raise SpecError(f"sample[{name!r}]", value, f"one of {list(options[name])}")
        arch = self.space.arch_from_sample(sample)
        self.space.validate_arch(arch)

        def layer_policy(slot: str) -> LayerPolicy:
            bits, sparsity, abits, rank, hashed = self._slot_genes[slot]
            return _layer_policy(
                int(sample[bits]),
                float(sample[sparsity]),
                int(sample[abits]) if abits else FLOAT_BITS,
                float(sample[rank]) if rank else 1.0,
                float(sample[hashed]) if hashed else 1.0,
            )

        return self._canonical(arch, layer_policy, float(sample["distill_alpha"]), float(sample["channel_ratio"]))

    def canonical(
        self,
        arch: Mapping[str, Any],
        layers: Mapping[str, LayerPolicy],
        distill_alpha: float = 0.0,
        channel_ratio: float = 0.0,
    ) -> Candidate:
        """The canonical arch, with the policy written the smallest way its symmetries allow."""
        self.space.validate_arch(arch)
        return self._canonical(arch, layers.get, distill_alpha, channel_ratio)

    def _canonical(
        self,
        arch: Mapping[str, Any],
        layer_policy: Callable[[str], LayerPolicy | None],
        distill_alpha: float,
        channel_ratio: float,
    ) -> Candidate:
        """`layer_policy(slot)`: the policy of a slot of `arch`, asked only for slots that stay live."""
        candidates = []
        for form in self.space.forms(arch):
            live = set(self.space.layer_slots(form.arch))
            moved = {}
            for source, slot in form.slot_map.items():
                if slot in live and (lp := layer_policy(source)) is not None:
                    moved[slot] = lp
            candidates.append(Candidate(form.arch, Policy(moved, distill_alpha, channel_ratio)))
        assert candidates, "a search space must return at least one form"
        if len(candidates) == 1:  # most archs: nothing to compare, no JSON to write
            return candidates[0]
        return min(candidates, key=lambda c: c.json_text)

    def encode(self, candidate: Candidate) -> Sample:
        """A sample that decodes to `candidate`; slots the arch lacks get their first option."""
        sample = self.space.sample_from_arch(candidate.arch)
        sample["distill_alpha"] = candidate.policy.distill_alpha
        sample["channel_ratio"] = candidate.policy.channel_ratio
        for slot, (bits, sparsity, abits, rank, hashed) in self._slot_genes.items():
            lp = candidate.policy.layers.get(slot)
            sample[bits] = lp.weight_bits if lp else self.weight_bits[0]
            sample[sparsity] = lp.sparsity if lp else self.sparsity[0]
            if abits:
                sample[abits] = lp.activation_bits if lp else self.activation_bits[0]
            if rank:
                sample[rank] = lp.rank_ratio if lp else self.rank_ratio[0]
            if hashed:
                sample[hashed] = lp.hash_ratio if lp else self.hash_ratio[0]
        return sample

    def contains(self, candidate: Candidate) -> bool:
        """True when `candidate` is the canonical form of some sample of this space."""
        try:
            return self.decode(self.encode(candidate)).key == candidate.key
        except (SpecError, KeyError, ValueError):
            return False


def option_list(values: Iterable[Any]) -> str:
    return ", ".join(map(str, values))
