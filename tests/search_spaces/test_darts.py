from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.search_spaces.darts import OPS, STEPS, cell_graph, format_genotype, parse_genotype

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], "
    "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
SPACE = SEARCH_SPACES.create("darts", channels=4, layers=3)
JOINT = JointSpace(SPACE)


def test_paper_genotype_round_trips_exactly():
    assert format_genotype(parse_genotype(DARTS_V2)) == DARTS_V2
    with_range = DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=range(2, 6)")
    assert parse_genotype(with_range) == parse_genotype(DARTS_V2)


@pytest.mark.parametrize(
    "text, fragment",
    [
        (DARTS_V2.replace("'dil_conv_3x3', 2", "'conv_7x7', 2"), "one of"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "an input of node 5"),
        (DARTS_V2.replace(", reduce_concat=[2, 3, 4, 5]", ""), "exactly the fields"),
        (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "every intermediate node"),
        (
            "Genotype(normal=[('sep_conv_3x3', 0)], normal_concat=[2, 3, 4, 5], reduce=[], reduce_concat=[2, 3, 4, 5])",
            "8 \\(op, input\\) pairs",
        ),
        ("normal=[...]", "Genotype"),
    ],
)
def test_bad_genotypes(text, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_genotype(text)


def _isomorphic(a, b) -> bool:
    ga, gb = cell_graph(a), cell_graph(b)
    return nx.is_isomorphic(
        ga,
        gb,
        node_match=lambda x, y: x["role"] == y["role"],
        edge_match=lambda x, y: sorted(e["op"] for e in x.values()) == sorted(e["op"] for e in y.values()),
    )


def _relabel(cell, rng):
    """A random topologically valid relabeling of the intermediate nodes, pairs in random order."""
    for _ in range(100):
        perm = {0: 0, 1: 1, **dict(zip(range(2, 2 + STEPS), rng.permutation(range(2, 2 + STEPS)).tolist()))}
        nodes = {}
        ok = True
        for position, (op, src) in enumerate(cell):
            node = perm[2 + position // 2]
            if perm[src] >= node:
                ok = False
            nodes.setdefault(node, []).append((op, perm[src]))
        if ok:
            out = []
            for node in range(2, 2 + STEPS):
                pair = nodes[node]
                out += pair[::-1] if rng.random() < 0.5 else pair
            return out
    return cell


def test_isomorphic_cells_are_one_candidate():
    rng = np.random.default_rng(0)
    for _ in range(40):
        cells = parse_genotype(JOINT.decode(JOINT.sample(rng)).arch["genotype"])
        cells = {k: [(op, src) for op, src in v] for k, v in cells.items()}
        twin = {"normal": _relabel(cells["normal"], rng), "reduce": _relabel(cells["reduce"], rng)}
        assert _isomorphic(cells["normal"], twin["normal"])
        a = JOINT.canonical({"genotype": format_genotype(cells)}, {})
        b = JOINT.canonical({"genotype": format_genotype(twin)}, {})
        assert a.key == b.key


def test_keys_agree_with_networkx_on_random_pairs():
    rng = np.random.default_rng(1)
    genomes = [parse_genotype(JOINT.decode(JOINT.sample(rng)).arch["genotype"])["normal"] for _ in range(30)]
    fixed_reduce = [("max_pool_3x3", 0)] * 8
    for i in range(len(genomes)):
        for j in range(i + 1, len(genomes)):
            same = (
                JOINT.canonical({"genotype": format_genotype({"normal": genomes[i], "reduce": fixed_reduce})}, {}).key
                == JOINT.canonical(
                    {"genotype": format_genotype({"normal": genomes[j], "reduce": fixed_reduce})}, {}
                ).key
            )
            assert same == _isomorphic(genomes[i], genomes[j])


def test_ops_are_the_eight_of_the_paper():
    assert len(OPS) == 8 and "none" in OPS and "dil_conv_5x5" in OPS


def test_the_supernet_runs_genotypes_whose_cells_leave_an_input_or_a_whole_cell_unread():
    """Cells that read only input 1 (or only 0) leave cells idle; the supernet must skip their
    preprocessing as the standalone network does, and still compute what it computes."""
    torch = pytest.importorskip("torch")
    from cosearch.search_spaces.darts import live_cells
    from cosearch.search_spaces.supernet import extract

    space = SEARCH_SPACES.create("darts", channels=4, layers=5)
    only_one = "[" + ", ".join(["('sep_conv_3x3', 1)", "('skip_connect', 1)"] * STEPS) + "]"
    only_zero = "[" + ", ".join(["('dil_conv_3x3', 0)", "('max_pool_3x3', 0)"] * STEPS) + "]"
    supernet = space.supernet((1, 8, 8), 10).eval()
    x = torch.randn(2, 1, 8, 8)
    for normal, reduce in ((only_one, only_zero), (only_zero, only_one), (only_one, only_one)):
        arch = {
            "genotype": f"Genotype(normal={normal}, normal_concat=[2, 3, 4, 5], reduce={reduce}, reduce_concat=[2, 3, 4, 5])"
        }
        cells = parse_genotype(arch["genotype"])
        assert not all(live_cells(cells, [space.cell_kind(i) for i in range(5)])) or normal == only_one
        subnet = extract(space, supernet, arch, (1, 8, 8), 10).eval()
        supernet.choose(arch)
        with torch.no_grad():
            assert torch.allclose(subnet(x), supernet(x), atol=1e-5)
