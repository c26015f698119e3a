"""The DARTS cell space (Liu et al., 2019): a normal and a reduction cell.

Each cell has two inputs (nodes 0 and 1: the outputs of the two previous cells) and 4
intermediate nodes; node k (2..5) sums two ops applied to two earlier nodes; the cell's output
concatenates nodes 2..5. Genotypes read and print in the paper's code form:
`Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])`
with two (op, input) pairs per node, in node order.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import networkx as nx
from pydantic import Field

from cosearch.core.errors import SpecError
from cosearch.search_spaces.base import MAX_CHANNELS, MAX_DEPTH, SEARCH_SPACES, Choice, Form, Sample, SearchSpace

OPS = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
PARAM_OPS = ("sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5")
CELLS = ("normal", "reduce")
STEPS = 4  # intermediate nodes per cell
CONCAT = list(range(2, 2 + STEPS))
SIDES = ("a", "b")  # the two inputs of a node

Cell = list[tuple[str, int]]  # 2 * STEPS (op, input) pairs, node by node


def _check_cell(name: str, cell: Any) -> Cell:
    if not isinstance(cell, (list, tuple)) or len(cell) != 2 * STEPS:
        raise SpecError(f"genotype.{name}", cell, f"a list of {2 * STEPS} (op, input) pairs, two per node")
    out: Cell = []
    for position, pair in enumerate(cell):
        node = 2 + position // 2
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise SpecError(f"genotype.{name}[{position}]", pair, "an (op, input) pair")
        op, source = pair
        if op not in OPS:
            raise SpecError(f"genotype.{name}[{position}]", op, f"one of {list(OPS)}")
        if not (isinstance(source, int) and 0 <= source < node):
            raise SpecError(f"genotype.{name}[{position}]", source, f"an input of node {node}: 0..{node - 1}")
        out.append((str(op), int(source)))
    return out


def parse_genotype(text: str) -> dict[str, Cell]:
    """`Genotype(normal=[...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=...)` -> cells."""
    try:
        call = ast.parse(str(text).strip(), mode="eval").body
    except SyntaxError:
        raise SpecError(
            "genotype",
            text,
            "Genotype(normal=[(op, input), ...], normal_concat=[2, 3, 4, 5], reduce=[...], reduce_concat=[2, 3, 4, 5])",
        ) from None
    if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype" and not call.args):
        raise SpecError("genotype", text, "a Genotype(...) call with keyword fields")
    fields = {kw.arg: kw.value for kw in call.keywords}
    expected = {"normal", "normal_concat", "reduce", "reduce_concat"}
    if set(fields) != expected:
        raise SpecError("genotype", sorted(fields), f"exactly the fields {sorted(expected)}")
    cells = {}
    for name in CELLS:
        try:
            cells[name] = _check_cell(name, ast.literal_eval(fields[name]))
        except ValueError:
            raise SpecError(
                f"genotype.{name}", ast.unparse(fields[name]), "a literal list of (op, input) pairs"
            ) from None
        concat = fields[f"{name}_concat"]
        value = list(range(2, 6)) if ast.unparse(concat) == "range(2, 6)" else ast.literal_eval(concat)
        if list(value) != CONCAT:
            raise SpecError(f"genotype.{name}_concat", value, f"{CONCAT} (every intermediate node is concatenated)")
    return cells


def format_genotype(cells: Mapping[str, Cell]) -> str:
    def cell(name: str) -> str:
        return "[" + ", ".join(f"('{op}', {src})" for op, src in cells[name]) + "]"

    return f"Genotype(normal={cell('normal')}, normal_concat={CONCAT}, reduce={cell('reduce')}, reduce_concat={CONCAT})"


def cell_graph(cell: Cell) -> nx.MultiDiGraph:
    """The cell as a DAG (parallel edges allowed: a node may read one input twice)."""
    graph = nx.MultiDiGraph()
    graph.add_nodes_from(range(2 + STEPS), role="mid")
    graph.nodes[0]["role"], graph.nodes[1]["role"] = "in0", "in1"
    for position, (op, source) in enumerate(cell):
        if op != "none":
            graph.add_edge(source, 2 + position // 2, op=op)
    return graph


def edge_slot(cell_index: int, node: int, side: str) -> str:
    return f"cells.{cell_index}.n{node}{side}"


def live_cells(cells: Mapping[str, Cell], kinds: Sequence[str]) -> list[bool]:
    """Whether each cell's output reaches the classifier, cells given by kind in network order.

    Cell k's output is input 1 of cell k+1 and input 0 of cell k+2; a genotype whose cells never
    read input 1 (or 0) leaves some cells computing nothing that is used. Those are not built:
    they would cost size and time, and structured pruning, which follows the traced graph,
    would not see them.
    """
    live = [False] * len(kinds)
    for k in reversed(range(len(kinds))):
        reads = [
            j < len(kinds) and live[j] and source in {s for _, s in cells[kinds[j]]}
            for j, source in ((k + 1, 1), (k + 2, 0))
        ]
        live[k] = k == len(kinds) - 1 or any(reads)
    return live


@SEARCH_SPACES.register("darts")
class DartsSpace(SearchSpace):
    """DARTS cells stacked `layers` deep (reductions at 1/3 and 2/3), stem width `channels`."""

    def __init__(
        self,
        channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 16,
        layers: Annotated[int, Field(ge=3, le=MAX_DEPTH)] = 8,
        stem_multiplier: Annotated[int, Field(ge=1, le=8)] = 3,
    ) -> None:
        self.channels, self.layers, self.stem_multiplier = channels, layers, stem_multiplier
        self.reductions = (layers // 3, 2 * layers // 3)
        self._all_slots = self._make_slots()

    def cell_kind(self, index: int) -> str:
        return "reduce" if index in self.reductions else "normal"

    # --- genotype -----------------------------------------------------------------------
    def choices(self) -> list[Choice]:
        out = []
        for name in CELLS:
            for node in range(2, 2 + STEPS):
                for side in SIDES:
                    out.append(Choice(f"{name}.n{node}{side}.input", tuple(range(node))))
                    out.append(Choice(f"{name}.n{node}{side}.op", OPS))
        return out

    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        cells = {
            name: [
                (sample[f"{name}.n{node}{side}.op"], sample[f"{name}.n{node}{side}.input"])
                for node in range(2, 2 + STEPS)
                for side in SIDES
            ]
            for name in CELLS
        }
        return {"genotype": format_genotype(cells)}

    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        cells = parse_genotype(arch["genotype"])
        sample: Sample = {}
        for name in CELLS:
            for position, (op, source) in enumerate(cells[name]):
                key = f"{name}.n{2 + position // 2}{SIDES[position % 2]}"
                sample[f"{key}.op"], sample[f"{key}.input"] = op, source
        return sample

    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        if set(arch) != {"genotype"}:
            raise SpecError("arch", sorted(arch), "exactly one key, 'genotype'")
        parse_genotype(arch["genotype"])

    def _make_slots(self) -> list[str]:
        slots = ["stem.conv"]
        for index in range(self.layers):
            slots += [f"cells.{index}.pre0", f"cells.{index}.pre1"]
            slots += [edge_slot(index, node, side) for node in range(2, 2 + STEPS) for side in SIDES]
        return [*slots, "classifier"]

    def all_slots(self) -> list[str]:
        return list(self._all_slots)

    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        cells = parse_genotype(arch["genotype"])
        live = set()
        alive = live_cells(cells, [self.cell_kind(i) for i in range(self.layers)])
        for index in range(self.layers):
            if not alive[index]:
                continue
            reduction = self.cell_kind(index) == "reduce"
            sources = {source for _, source in cells[self.cell_kind(index)]}
            live |= {
                f"cells.{index}.pre{source}" for source in (0, 1) if source in sources
            }  # inputs no edge reads have none
            for position, (op, source) in enumerate(cells[self.cell_kind(index)]):
                # A strided skip is a FactorizedReduce, which has weights.
                if op in PARAM_OPS or (op == "skip_connect" and reduction and source < 2):
                    live.add(edge_slot(index, 2 + position // 2, SIDES[position % 2]))
        return [s for s in self._all_slots if s.count(".") < 2 or s in live]

    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        """Per cell kind, the smallest writing over relabelings of the intermediate nodes that keep
        the cell a DAG, each node's two inputs sorted; a `none` edge's input is written as 0."""
        cells = parse_genotype(arch["genotype"])
        per_kind: dict[str, list[tuple[Cell, dict[tuple[int, str], tuple[int, str]]]]] = {}
        for name in CELLS:
            kind_forms = self._cell_forms([(op, 0 if op == "none" else src) for op, src in cells[name]])
            smallest = min(repr(cell) for cell, _ in kind_forms)  # each kind canonical on its own
            per_kind[name] = [(cell, moves) for cell, moves in kind_forms if repr(cell) == smallest]
        forms = []
        for normal, reduce in itertools.product(per_kind["normal"], per_kind["reduce"]):
            slot_map = {s: s for s in self._all_slots}
            for index in range(self.layers):
                moves = (reduce if self.cell_kind(index) == "reduce" else normal)[1]
                for (node, side), (new_node, new_side) in moves.items():
                    slot_map[edge_slot(index, node, side)] = edge_slot(index, new_node, new_side)
            forms.append(Form({"genotype": format_genotype({"normal": normal[0], "reduce": reduce[0]})}, slot_map))
        return forms

    @staticmethod
    def _cell_forms(cell: Cell) -> list[tuple[Cell, dict[tuple[int, str], tuple[int, str]]]]:
        forms = []
        for perm in itertools.permutations(range(2, 2 + STEPS)):
            relabel = {0: 0, 1: 1, **dict(zip(range(2, 2 + STEPS), perm))}
            nodes: dict[int, list[tuple[str, int, int, str]]] = {}
            valid = True
            for position, (op, source) in enumerate(cell):
                node, side = 2 + position // 2, SIDES[position % 2]
                new_source = relabel[source] if op != "none" else 0
                if op != "none" and new_source >= relabel[node]:
                    valid = False
                    break
                nodes.setdefault(relabel[node], []).append((op, new_source, node, side))
            if not valid:
                continue
            new_cell: Cell = []
            moves: dict[tuple[int, str], tuple[int, str]] = {}
            for new_node in range(2, 2 + STEPS):
                pair = sorted(nodes[new_node], key=lambda e: (e[0], e[1]))  # the two inputs are unordered
                for side, (op, source, old_node, old_side) in zip(SIDES, pair):
                    new_cell.append((op, source))
                    moves[(old_node, old_side)] = (new_node, side)
            forms.append((new_cell, moves))
        return forms

    def describe(self, arch: Mapping[str, Any]) -> str:
        cells = parse_genotype(arch["genotype"])
        return " | ".join(f"{name}: " + " ".join(f"{op}~{src}" for op, src in cells[name]) for name in CELLS)

    def diagram(self, arch: Mapping[str, Any]) -> list[tuple[str, Any]]:
        drawn = []
        for name, title in zip(CELLS, ("normal cell", "reduction cell")):
            graph = cell_graph(parse_genotype(arch["genotype"])[name])
            nx.set_node_attributes(graph, {0: "c[k-2]", 1: "c[k-1]"}, "label")
            graph.add_node("out", label="concat")
            graph.add_edges_from((node, "out") for node in CONCAT)
            drawn.append((title, graph))
        return drawn

    # --- phenotype ----------------------------------------------------------------------
    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._darts_torch import DartsNetwork

        return DartsNetwork(
            parse_genotype(arch["genotype"]),
            in_channels=int(input_shape[0]),
            channels=self.channels,
            layers=self.layers,
            reductions=self.reductions,
            stem_multiplier=self.stem_multiplier,
            num_classes=num_classes,
            live=live_cells(parse_genotype(arch["genotype"]), [self.cell_kind(i) for i in range(self.layers)]),
        )

    def supernet(self, input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._darts_torch import DartsSupernet

        return DartsSupernet(
            int(input_shape[0]), self.channels, self.layers, self.reductions, self.stem_multiplier, num_classes
        )
