"""The NAS-Bench-201 cell space (Dong & Yang, 2020), with a network sized for small images.

A cell is a DAG on 4 nodes; every edge i->j (i < j) carries one of 5 ops. The standard string
`|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|`
lists, per node 1..3, the op from each earlier node. The network stacks `cells_per_stage` cells
in 3 stages joined by residual reduction blocks, as in the benchmark.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Annotated, Any

import networkx as nx
from pydantic import Field

from cosearch.core.errors import SpecError
from cosearch.search_spaces.base import MAX_CHANNELS, MAX_DEPTH, SEARCH_SPACES, Choice, Form, Sample, SearchSpace

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_OPS = ("nor_conv_1x1", "nor_conv_3x3")
NUM_NODES = 4
EDGES = tuple((i, j) for j in range(1, NUM_NODES) for i in range(j))  # string order
REDUCTION_SLOTS = ("conv_a.conv", "conv_b.conv", "shortcut.conv")


def edge_name(i: int, j: int) -> str:
    return f"e{i}_{j}"


def parse_arch_str(text: str) -> dict[tuple[int, int], str]:
    """`|op~0|+|op~0|op~1|+|...|` -> {(i, j): op}; raises SpecError naming the bad part."""
    if not isinstance(text, str):
        raise SpecError("arch.cell", text, "a NAS-Bench-201 string such as '|nor_conv_3x3~0|+|...|'")
    return dict(_parse(text))


@lru_cache(maxsize=1 << 14)  # NB201 has 15625 cells; every decode parses its cell three times
def _parse(text: str) -> tuple[tuple[tuple[int, int], str], ...]:
    nodes = text.split("+")
    if len(nodes) != NUM_NODES - 1:
        raise SpecError("arch.cell", text, f"{NUM_NODES - 1} nodes joined by '+'")
    ops: dict[tuple[int, int], str] = {}
    for j, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")):
            raise SpecError("arch.cell", node, "each node written as '|op~i|op~k|'")
        parts = node[1:-1].split("|")
        if len(parts) != j:
            raise SpecError("arch.cell", node, f"node {j} takes exactly {j} inputs")
        for part in parts:
            op, sep, src = part.partition("~")
            if not sep or not src.isdigit():
                raise SpecError("arch.cell", part, "'op~i' with i the input node")
            if op not in OPS:
                raise SpecError("arch.cell", op, f"one of {list(OPS)}")
            i = int(src)
            if i >= j or (i, j) in ops:
                raise SpecError("arch.cell", part, f"inputs 0..{j - 1} of node {j}, each once")
            ops[(i, j)] = op
    return tuple(ops.items())


def format_arch_str(ops: Mapping[tuple[int, int], str]) -> str:
    return "+".join("|" + "|".join(f"{ops[(i, j)]}~{i}" for i in range(j)) + "|" for j in range(1, NUM_NODES))


def live_ops(ops: Mapping[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    """Set to `none` every edge that is not on a path from the input (0) to the output (3).

    Edges only go forward, so one pass in node order finds what the input reaches and one pass
    backwards what reaches the output (4x cheaper than a networkx traversal, per decode)."""
    from_input = {0}
    for j in range(1, NUM_NODES):
        if any(i in from_input and ops[(i, j)] != "none" for i in range(j)):
            from_input.add(j)
    to_output = {NUM_NODES - 1}
    for i in reversed(range(NUM_NODES - 1)):
        if any(j in to_output and ops[(i, j)] != "none" for j in range(i + 1, NUM_NODES)):
            to_output.add(i)
    return {
        (i, j): op if (op != "none" and i in from_input and j in to_output) else "none" for (i, j), op in ops.items()
    }


PERMS = tuple(itertools.permutations(range(1, NUM_NODES - 1)))  # relabelings of the inner nodes


def relabeling(perm: tuple[int, ...]) -> dict[int, int]:
    """Node -> new node: input and output stay, inner nodes move as `perm` says."""
    return {0: 0, NUM_NODES - 1: NUM_NODES - 1, **dict(zip(range(1, NUM_NODES - 1), perm))}


@lru_cache(maxsize=1 << 14)
def canonical_cell(text: str) -> tuple[str, tuple[tuple[int, ...], ...]]:
    """Dead edges removed, then the smallest string over relabelings of the inner nodes that keep
    edges forward; returns it with every relabeling that gives it."""
    ops = live_ops(parse_arch_str(text))
    written: dict[tuple[int, ...], str] = {}
    for perm in PERMS:
        relabel = relabeling(perm)
        if any(op != "none" and relabel[i] > relabel[j] for (i, j), op in ops.items()):
            continue
        written[perm] = format_arch_str(
            {(min(relabel[i], relabel[j]), max(relabel[i], relabel[j])): op for (i, j), op in ops.items()}
        )
    smallest = min(written.values())
    return smallest, tuple(perm for perm, text in written.items() if text == smallest)


def cell_graph(ops: Mapping[tuple[int, int], str]) -> nx.DiGraph:
    """The cell as a DAG with op labels on edges (`none` edges left out)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(range(NUM_NODES))
    for (i, j), op in ops.items():
        if op != "none":
            graph.add_edge(i, j, op=op)
    return graph


@SEARCH_SPACES.register("nb201")
class NB201Space(SearchSpace):
    """NAS-Bench-201 cells; `channels` is the stem width, `cells_per_stage` the N of the paper."""

    def __init__(
        self,
        channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 16,
        cells_per_stage: Annotated[int, Field(ge=1, le=MAX_DEPTH)] = 5,
    ) -> None:
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self._all_slots = self._make_slots()
        # Per slot its cell edge (None outside cells), and per relabeling where each slot moves:
        # both depend on the space only, so decode does not rebuild them per candidate.
        self._slot_edges = [(s, s.split(".")[2] if s.startswith("stage") else None) for s in self._all_slots]
        self._slot_maps = {perm: self._make_slot_map(perm) for perm in PERMS}

    # --- genotype -----------------------------------------------------------------------
    def choices(self) -> list[Choice]:
        return [Choice(f"cell.{edge_name(i, j)}", OPS) for i, j in EDGES]

    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return {"cell": format_arch_str({(i, j): sample[f"cell.{edge_name(i, j)}"] for i, j in EDGES})}

    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        ops = parse_arch_str(arch["cell"])
        return {f"cell.{edge_name(i, j)}": ops[(i, j)] for i, j in EDGES}

    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        if set(arch) != {"cell"}:
            raise SpecError("arch", sorted(arch), "exactly one key, 'cell'")
        parse_arch_str(arch["cell"])

    def _cell_prefixes(self) -> list[str]:
        return [f"stage{s}.{k}" for s in range(3) for k in range(self.cells_per_stage)]

    def all_slots(self) -> list[str]:
        return list(self._all_slots)

    def _make_slots(self) -> list[str]:
        slots = ["stem.conv"]
        slots += [f"{prefix}.{edge_name(i, j)}.conv" for prefix in self._cell_prefixes() for i, j in EDGES]
        slots += [f"reduce{r}.{name}" for r in (1, 2) for name in REDUCTION_SLOTS]
        return [*slots, "classifier"]

    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        ops = parse_arch_str(arch["cell"])
        conv_edges = {edge_name(i, j) for (i, j), op in ops.items() if op in CONV_OPS}
        return [s for s, edge in self._slot_edges if edge is None or edge in conv_edges]

    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        """Dead edges removed, then the smallest string over relabelings of nodes 1 and 2 that keep
        edges forward (both relabelings when they give the same string)."""
        smallest, perms = canonical_cell(arch["cell"])
        return [Form({"cell": smallest}, MappingProxyType(self._slot_maps[perm])) for perm in perms]

    def _make_slot_map(self, perm: tuple[int, ...]) -> dict[str, str]:
        relabel = relabeling(perm)
        slot_map = {s: s for s in self._all_slots}
        for prefix in self._cell_prefixes():
            for i, j in EDGES:
                a, b = sorted((relabel[i], relabel[j]))
                slot_map[f"{prefix}.{edge_name(i, j)}.conv"] = f"{prefix}.{edge_name(a, b)}.conv"
        return slot_map

    def describe(self, arch: Mapping[str, Any]) -> str:
        return str(arch["cell"])

    def diagram(self, arch: Mapping[str, Any]) -> list[tuple[str, Any]]:
        graph = cell_graph(parse_arch_str(arch["cell"]))
        graph.remove_nodes_from([n for n in range(1, NUM_NODES - 1) if graph.degree(n) == 0])  # unused nodes
        nx.set_node_attributes(graph, {0: "in", NUM_NODES - 1: "out"}, "label")
        return [(f"cell (the same in every stage, {self.cells_per_stage} per stage)", graph)]

    # --- phenotype ----------------------------------------------------------------------
    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._nb201_torch import NB201Network

        self.validate_arch(arch)
        return NB201Network(
            ops=parse_arch_str(arch["cell"]),
            in_channels=int(input_shape[0]),
            channels=self.channels,
            cells_per_stage=self.cells_per_stage,
            num_classes=num_classes,
        )

    def supernet(self, input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._nb201_torch import NB201Supernet

        return NB201Supernet(int(input_shape[0]), self.channels, self.cells_per_stage, num_classes)
