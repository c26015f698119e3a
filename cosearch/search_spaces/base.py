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

from cosearch.compressors import genes as compression_genes
from cosearch.core.candidate import Candidate, LayerPolicy, Policy, canonical_json
from cosearch.core.errors import SpecError
from cosearch.core.registry import Registry

Sample = dict[str, Any]  # decision name -> chosen option; what strategies see


# Caps on a space's size parameters: far above any network searched here, low enough that a typo
# (cells_per_stage: 1000000000000) is a clear error instead of a driver enumerating slots forever.
MAX_CHANNELS = 4096
MAX_DEPTH = 64


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
    # True when the space's supernet runs every layer group narrower, on its first channels (its
    # `choose(arch, kept)`): it then trains structured pruning (`Compressor.kept_channels`) too.
    elastic_channels: bool = False

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

    def diagram(self, arch: Mapping[str, Any]) -> list[tuple[str, Any]]:
        """The architecture as titled networkx graphs for the report's candidate card: nodes may
        carry a `label`, edges an `op`. By default the chain of layer slots; a space with cells
        draws its cells."""
        import networkx as nx

        graph = nx.DiGraph()
        nx.add_path(graph, ["input", *self.layer_slots(arch), "output"])
        return [("layers", graph)]

    def initial_weights(self, model: Any) -> Any:
        """The network `build` gave, with the weights training starts from (a space of a given,
        pretrained network loads them here); by default as built."""
        return model

    def check_files(self, input_shape: Sequence[int], num_classes: int, dataset: str) -> None:
        """Raise SpecError if a file or code the space reads is missing or does not fit the task.
        Called when a run starts or resumes only, so a stored run reads without them."""
        return None

    def default_teacher(self) -> dict[str, Any] | None:
        """The job's `compression.teacher` when it names none (`{model, checkpoint}`): a space that
        implements it teaches itself, so a distilling job needs no teacher named."""
        return None

    @classmethod
    def teaches_itself(cls) -> bool:
        return cls.default_teacher is not SearchSpace.default_teacher

    def extremes(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The largest and the smallest architecture, where the space's choices are sizes (an
        elastic space): its supernet can then train both every step (the sandwich rule). None here."""
        return None

    def supernet(self, input_shape: Sequence[int], num_classes: int) -> Any:
        """One module with the weights of every architecture here, for weight sharing: see
        `cosearch.search_spaces.supernet` for what it offers. Spaces without one leave this."""
        raise NotImplementedError(f"the {self.registry_name!r} search space has no supernet")

    @classmethod
    def has_supernet(cls) -> bool:
        return cls.supernet is not SearchSpace.supernet


SEARCH_SPACES: Registry[SearchSpace] = Registry("search space")


@lru_cache(maxsize=4096)
def _layer_policy(values: tuple[tuple[str, Any], ...]) -> LayerPolicy:
    """Shared, immutable layer policies: a decode builds one per slot, hundreds per candidate."""
    return LayerPolicy(dict(values))


class JointSpace:
    """The joint genome: architecture choices plus every compression gene (`cosearch.compressors`).

    `JointSpace(space, **{gene: options, ...})`: each keyword names a gene and
    the options searched for it; genes not named search their technique's default options. A
    gene with only its "off" option is left out of the genome unless its technique says otherwise.
    """

    def __init__(self, space: SearchSpace, **options: Sequence[Any]) -> None:
        genes = compression_genes()
        for name in options:
            if name not in genes:
                raise ValueError(f"`{name}` is no compression gene; the genes are {list(genes)}")
        self.space = space
        self.options: dict[str, tuple[Any, ...]] = {}
        for name, gene in genes.items():
            values = tuple(options.get(name, gene.search))
            for value in values:
                gene.validate(name, value)
            self.options[name] = tuple(map(gene.kind, values)) if gene.kind is float else values
        in_genome = {
            name: gene.always_a_gene or self.options[name] != (gene.default,) for name, gene in genes.items()
        }  # only then a gene, so genomes without a technique stay as they were
        self._choices = list(space.choices())
        self._network_genes = {}  # genome name -> (gene name, its type)
        for name, gene in genes.items():
            if gene.scope == "network" and in_genome[name]:
                self._choices.append(Choice(gene.genome, self.options[name], group=gene.group))
                self._network_genes[gene.genome] = (name, gene.kind)
        layer_genes = [(name, gene) for name, gene in genes.items() if gene.scope == "layer" and in_genome[name]]
        for slot in space.all_slots():
            for name, gene in layer_genes:
                self._choices.append(Choice(f"{gene.genome}:{slot}", self.options[name], group=gene.group))
        self._by_name = {c.name: c for c in self._choices}
        self._options = {c.name: c.options for c in self._choices}
        # Per slot (genome name, gene name, type) of its genes; genes left out keep their default.
        # Built once, as decode reads them for every layer of every candidate.
        self._slot_genes = {
            slot: tuple((f"{gene.genome}:{slot}", name, gene.kind) for name, gene in layer_genes)
            for slot in space.all_slots()
        }
        self._sizes = np.array([len(c.options) for c in self._choices])
        self._groups = sorted({c.group for c in self._choices if len(c.options) > 1})

    def choices(self) -> list[Choice]:
        return list(self._choices)

    def sample(self, rng: np.random.Generator) -> Sample:
        picks = rng.integers(0, self._sizes).tolist()  # one draw for all decisions: genomes have hundreds
        return dict(zip(self._options, map(operator.getitem, self._options.values(), picks)))

    def fair_samples(self, rng: np.random.Generator) -> list[Sample]:
        """As many samples as the widest decision has options, each decision's options spread
        evenly over them in a random order: a decision with all of them takes each once (FairNAS's
        strict fairness, which trains every op of an edge on the same batch in every step); one
        with fewer takes each as often as it can (K // n or one more)."""
        count = int(self._sizes.max())
        columns = [
            rng.permutation(np.resize(rng.permutation(len(options)), count)) for options in self._options.values()
        ]
        return [
            {name: options[int(column[k])] for (name, options), column in zip(self._options.items(), columns)}
            for k in range(count)
        ]

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
            return _layer_policy(tuple((name, kind(sample[gene])) for gene, name, kind in self._slot_genes[slot]))

        network = {name: kind(sample[gene]) for gene, (name, kind) in self._network_genes.items()}
        return self._canonical(arch, layer_policy, network)

    def extreme(
        self, arch: Mapping[str, Any], mildest: bool = True, searched: Mapping[str, Mapping[str, Any]] | None = None
    ) -> Candidate:
        """`arch` with every compression gene at the mildest option searched (its off value, else the
        option nearest it) or the harshest (the option farthest from off) on every layer, except
        where `searched` (gene -> slot -> value) sets a slot's value."""
        chosen = {}
        for name, gene in compression_genes().items():
            by_distance = sorted(self.options[name], key=lambda v, off=gene.default: (abs(v - off), v))
            chosen[name] = by_distance[0] if mildest else by_distance[-1]
        layer = LayerPolicy({name: chosen[name] for name in compression_genes("layer")})
        searched = searched or {}
        layers = {
            slot: layer.replace(**{gene: values[slot] for gene, values in searched.items() if slot in values})
            for slot in self.space.all_slots()
        }
        return self.canonical(arch, layers, **{name: chosen[name] for name in compression_genes("network")})

    def canonical(self, arch: Mapping[str, Any], layers: Mapping[str, LayerPolicy], **network: Any) -> Candidate:
        """The canonical arch, with the policy written the smallest way its symmetries allow."""
        self.space.validate_arch(arch)
        return self._canonical(arch, layers.get, network)

    def _canonical(
        self, arch: Mapping[str, Any], layer_policy: Callable[[str], LayerPolicy | None], network: Mapping[str, Any]
    ) -> Candidate:
        """`layer_policy(slot)`: the policy of a slot of `arch`, asked only for slots that stay live."""
        candidates = []
        for form in self.space.forms(arch):
            live = set(self.space.layer_slots(form.arch))
            moved = {}
            for source, slot in form.slot_map.items():
                if slot in live and (lp := layer_policy(source)) is not None:
                    moved[slot] = lp
            candidates.append(Candidate(form.arch, Policy(moved, **network)))
        assert candidates, "a search space must return at least one form"
        if len(candidates) == 1:  # most archs: nothing to compare, no JSON to write
            return candidates[0]
        return min(candidates, key=lambda c: c.json_text)

    def encode(self, candidate: Candidate) -> Sample:
        """A sample that decodes to `candidate`; slots the arch lacks get their first option."""
        sample = self.space.sample_from_arch(candidate.arch)
        for gene, (name, _) in self._network_genes.items():
            sample[gene] = candidate.policy.network[name]
        for slot, slot_genes in self._slot_genes.items():
            lp = candidate.policy.layers.get(slot)
            for gene, name, _ in slot_genes:
                sample[gene] = lp[name] if lp else self._options[gene][0]
        return sample

    def contains(self, candidate: Candidate) -> bool:
        """True when `candidate` is the canonical form of some sample of this space."""
        try:
            return self.decode(self.encode(candidate)).key == candidate.key
        except (SpecError, KeyError, ValueError):
            return False


def option_list(values: Iterable[Any]) -> str:
    return ", ".join(map(str, values))
