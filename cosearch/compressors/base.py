"""What a compression technique is: one gene of the joint genome and how it acts on a network.

A technique is one file holding one `Compressor` subclass under `@COMPRESSORS.register(name)`;
the name is its gene's name everywhere (the job's `compression` section, a candidate's JSON,
`LayerPolicy` / `Policy`). This module is torch-free: the driver reads genes without torch, and
the torch-side hooks import it when a network is compressed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any, Literal

from cosearch.core.candidate import FLOAT_BITS
from cosearch.core.registry import Registry


@dataclass(frozen=True)
class Gene:
    """One decision per layer slot (`scope="layer"`) or per network, with its allowed values.

    `default` means "off" and is left out of a candidate's JSON, so adding a technique changes
    no stored key. `rule` is the condition as code (`0 <= ratio < 1`), `allowed` the same for
    people ("a fraction with 0 <= ratio < 1"); `check` tests one value.
    """

    scope: Literal["layer", "network"]
    default: Any
    search: tuple[Any, ...]  # the options a job searches when it names none
    kind: type  # int or float: the type of the job's option list
    rule: str
    allowed: str
    check: Callable[[Any], bool]
    genome: str  # gene names in a genome: `GENOME:SLOT` per layer, `GENOME` per network
    group: str  # mutation picks a group first, so techniques with many slots do not crowd out others
    # Before plug-ins, four genes were always in the genome and two always in a layer's JSON;
    # keeping that keeps every stored key and seeded run as it was. New genes set neither.
    always_a_gene: bool = False
    always_written: bool = False

    def validate(self, name: str, value: Any) -> None:
        """Raise ValueError in the "`RULE` must hold, but got NAME=VALUE" form the job maps to its field."""
        try:
            ok = self.check(value)
        except TypeError:
            ok = False
        if not ok:
            raise ValueError(f"`{self.rule}` must hold, but got {name}={value!r}")


@dataclass(frozen=True)
class Precision:
    """The bit widths one layer runs at once deployed (32 = float), as its techniques set them.

    Everything downstream of the genes (BitOps, accelerator tables, the ONNX file's integer
    grids and kernels, DARTS's relaxed bits) reads these, never a gene by name: a technique
    says which width it sets with `Compressor.precision_of`.
    """

    weights: int = FLOAT_BITS
    inputs: int = FLOAT_BITS

    @property
    def integer(self) -> bool:
        """The layer runs as an integer kernel: its input is quantized."""
        return self.inputs != FLOAT_BITS

    @property
    def weight_only(self) -> bool:
        """Weights on an integer grid, input in float: stored small, computed in float."""
        return self.weights != FLOAT_BITS and self.inputs == FLOAT_BITS


@dataclass(frozen=True)
class WeightCost:
    """What one weight tensor needs at rest, folded through the techniques in stage order."""

    values: int  # numbers stored
    bits_per_value: int = 32
    extra_bits: int = 0  # masks, scales
    shared: bool = False  # values are hashed buckets: stored as float, not on the weights' grid

    @property
    def bits(self) -> int:
        return self.values * self.bits_per_value + self.extra_bits


class Compressor:
    """Base of every technique. Override only the hooks the technique uses.

    Hooks run in `stage` order: structural changes first (`reshape`: channels removed, layers
    factorised), then weight transforms per layer (`apply`, as torch parametrizations), so
    pruning masks are taken before quantization scales.
    """

    name: str = ""  # set by the registry
    gene: Gene
    stage: int = 50
    needs_teacher: bool = False  # a run whose options turn this on prepares a distillation teacher
    summary_position: int = 50  # where its part goes in `Policy.summary`
    # The deployed width this layer gene sets, if any. It is also how the technique's weights are
    # stored in ONNX: `hardware.qdq` writes integer grids, integer kernels and their small-storage
    # form from a layer's `Precision`; every other technique is stored as its baked module exports.
    precision_of: Literal["weights", "inputs"] | None = None

    def summarize(self, values: Sequence[Any]) -> str | None:
        """A short phrase for the values of this gene over a policy's layers (or its one value)."""
        return None

    def zeroed_share(self, value: Any) -> float:
        """The share of a layer's weights this technique sets to zero at `value`, where the value
        alone says it (stand-in evaluators read it; real sizes come from `weight_cost`)."""
        return 0.0

    # --- torch side: each hook imports torch itself ---------------------------------------
    def turned_on(self, policy: Any) -> bool:
        """Whether `policy` (a Policy) sets this technique's gene anywhere off its default."""
        default = self.gene.default
        if self.gene.scope == "network":
            return policy.network.get(self.name, default) != default
        return any(layer_policy[self.name] != default for layer_policy in policy.layers.values())

    def reshape(self, model: Any, policy: Any, context: ReshapeContext) -> Any:
        """A copy of `model` with this technique's structural change, or `model` itself."""
        return model

    def apply(self, module: Any, value: Any, learn: bool) -> None:
        """Transform one conv / linear layer in place for a non-default `value` (`learn`: trainable steps)."""

    def rebuilds_for_loading(self) -> bool:
        """True when a baked model needs this technique's modules back before its state loads."""
        return False

    def training_loss(self, value: Any, teacher_logits: Any, temperature: float) -> Any:
        """For a `needs_teacher` technique: the loss (`.loss(student_logits, labels, idx, progress)`,
        progress the share of a from-scratch training done, 1 in a fine-tune) that training and
        fine-tuning use at a non-default `value`."""
        raise NotImplementedError(f"{self.name} uses no teacher")

    elastic: bool = False  # True when `elastic_weight` or `elastic_input` is implemented: a supernet can train with it

    def elastic_weight(self, weight: Any, value: Any) -> Any:
        """For a supernet training step: `weight` as this technique changes it at a non-default
        `value`, recomputed from the current weights and differentiable (straight-through), so the
        shared weights learn to work at every value the job searches. Unchanged here."""
        return weight

    def elastic_input(self, x: Any, value: Any) -> Any:
        """For a supernet training step: the layer's input `x` as this technique changes it at a
        non-default `value` (differentiable, straight-through). Unchanged here."""
        return x

    def kept_channels(self, channels: int, value: Any) -> int:
        """For a network-level technique that removes whole channels: how many of a layer group's
        `channels` it keeps at `value`. A supernet that runs every group narrower (on its first
        channels: `SearchSpace.elastic_channels`) trains with it then. All of them here."""
        return channels

    @property
    def removes_channels(self) -> bool:
        """True when `kept_channels` is implemented."""
        return type(self).kept_channels is not Compressor.kept_channels

    def weight_cost(self, value: Any, weight: Any, cost: WeightCost) -> WeightCost:
        """`cost` after this technique acts on `weight` (a baked tensor) at a non-default `value`."""
        return cost


@dataclass(frozen=True)
class ReshapeContext:
    input_shape: Sequence[int]
    importance: str = "l1"
    batch: Any = None  # (images, labels) for data-driven importance


COMPRESSORS: Registry[Compressor] = Registry("compressor")


@cache
def _instances(count: int) -> dict[str, Compressor]:
    del count  # a new registration is a new cache entry
    out = {}
    for name in COMPRESSORS.in_order():
        compressor = COMPRESSORS.create(name)
        compressor.name = name
        out[name] = compressor
    return out


def compressors() -> dict[str, Compressor]:
    """Every technique by gene name, in registration order (the genome's order)."""
    return _instances(len(COMPRESSORS))


def teacher_technique(policy: Any) -> tuple[Compressor, Any] | None:
    """The teacher-using technique `policy` turns on, with its value, or None."""
    for technique in compressors().values():
        if technique.needs_teacher and technique.turned_on(policy):
            return technique, policy.network[technique.name]
    return None


def genes(scope: str | None = None) -> dict[str, Gene]:
    """Genes by name, in genome order; `scope` "layer" or "network" for one kind only."""
    return _genes(len(COMPRESSORS), scope)


@cache
def _genes(count: int, scope: str | None) -> dict[str, Gene]:
    return {name: c.gene for name, c in _instances(count).items() if scope is None or c.gene.scope == scope}


def layer_precision(layer_policy: Any) -> Precision:
    """The widths `layer_policy` (a LayerPolicy) deploys its layer at."""
    return _precision(len(COMPRESSORS), layer_policy)


@lru_cache(maxsize=4096)  # a run has few distinct layer policies, read for every layer of every candidate
def _precision(count: int, layer_policy: Any) -> Precision:
    widths = {c.precision_of: layer_policy[c.name] for c in _instances(count).values() if c.precision_of}
    return Precision(**widths)


def runs_integer(policy: Any) -> bool:
    """Whether any layer of `policy` (a Policy) runs as an integer kernel."""
    return any(layer_precision(lp).integer for lp in policy.layers.values())


def precision_genes() -> dict[str, str]:
    """The gene that sets each deployed width ("weights", "inputs"), by that width."""
    return {c.precision_of: name for name, c in compressors().items() if c.precision_of}


def zeroed_share(layer_policy: Any) -> float:
    """The share of a layer's weights that `layer_policy`'s techniques set to zero."""
    return _zeroed(len(COMPRESSORS), layer_policy)


@lru_cache(maxsize=4096)
def _zeroed(count: int, layer_policy: Any) -> float:
    share = 0.0
    for name, technique in _instances(count).items():
        if technique.gene.scope == "layer" and layer_policy[name] != technique.gene.default:
            zeroed = technique.zeroed_share(layer_policy[name])
            share = zeroed if share == 0.0 else 1.0 - (1.0 - share) * (1.0 - zeroed)  # independent, as masks
    return share


def in_stage_order(scope: str | None = None) -> list[Compressor]:
    return sorted((c for c in compressors().values() if scope is None or c.gene.scope == scope), key=lambda c: c.stage)
