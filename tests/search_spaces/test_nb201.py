from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from cosearch.core import SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.search_spaces.nb201 import EDGES, NUM_NODES, OPS, cell_graph, format_arch_str, live_ops, parse_arch_str

PAPER_EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)


@pytest.fixture(scope="module")
def joint(space):
    return JointSpace(space)


def test_arch_string_round_trips_exactly():
    ops = parse_arch_str(PAPER_EXAMPLE)
    assert ops[(0, 1)] == "nor_conv_3x3" and ops[(1, 2)] == "avg_pool_3x3" and ops[(2, 3)] == "skip_connect"
    assert format_arch_str(ops) == PAPER_EXAMPLE


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "3 nodes"),
        ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "one of"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "inputs 0..0"),
        ("|none~0|+|none~0|+|none~0|none~1|none~2|", "exactly 2 inputs"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "op~i"),
        (42, "NAS-Bench-201 string"),
    ],
)
def test_bad_arch_strings_name_the_problem(text, fragment):
    with pytest.raises(SpecError, match=fragment):
        parse_arch_str(text)


def _same_function(a: str, b: str) -> bool:
    """Ground truth by networkx: the live labelled DAGs are isomorphic with input and output fixed."""
    ga, gb = cell_graph(live_ops(parse_arch_str(a))), cell_graph(live_ops(parse_arch_str(b)))
    for g in (ga, gb):
        for n in g.nodes:
            g.nodes[n]["role"] = n if n in (0, NUM_NODES - 1) else "mid"
    return nx.is_isomorphic(
        ga, gb, node_match=lambda x, y: x["role"] == y["role"], edge_match=lambda x, y: x["op"] == y["op"]
    )


def _key(joint, arch_str):
    return joint.canonical({"cell": arch_str}, {}).key


def test_dead_edges_do_not_change_the_candidate(joint):
    # Node 2 has no input, so its outgoing conv is cut off; node 1 feeds nothing, so its input is dead.
    a = "|nor_conv_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"
    b = "|avg_pool_3x3~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"
    assert _same_function(a, b)
    assert _key(joint, a) == _key(joint, b)
    assert joint.canonical({"cell": a}, {}).arch["cell"] == "|none~0|+|none~0|none~1|+|nor_conv_1x1~0|none~1|none~2|"


def test_swapped_intermediate_nodes_are_one_candidate(joint):
    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|skip_connect~1|nor_conv_1x1~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|"
    assert _same_function(a, b)
    assert _key(joint, a) == _key(joint, b)


def test_canonical_keys_agree_with_networkx_isomorphism(joint):
    rng = np.random.default_rng(0)
    archs = [format_arch_str(dict(zip(EDGES, rng.choice(OPS, size=6)))) for _ in range(120)]
    for a, b in itertools.combinations(archs[:60], 2):
        assert (_key(joint, a) == _key(joint, b)) == _same_function(a, b), (a, b)
    for a in archs:  # each arch against its node-swapped twin
        ops = parse_arch_str(a)
        if ops[(1, 2)] == "none":
            swap = {0: 0, 1: 2, 2: 1, 3: 3}
            twin = format_arch_str({(min(swap[i], swap[j]), max(swap[i], swap[j])): op for (i, j), op in ops.items()})
            assert _key(joint, a) == _key(joint, twin)


def test_policy_moves_with_the_relabelled_slot(joint, space):
    from cosearch.core import LayerPolicy

    a = "|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|none~0|nor_conv_1x1~1|none~2|"
    b = "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|nor_conv_1x1~2|"
    pol_a = {"stage0.0.e0_1.conv": LayerPolicy(weight_bits=4, sparsity=0.5)}
    pol_b = {"stage0.0.e0_2.conv": LayerPolicy(weight_bits=4, sparsity=0.5)}
    assert joint.canonical({"cell": a}, pol_a).key == joint.canonical({"cell": b}, pol_b).key
    assert joint.canonical({"cell": a}, pol_a).key != joint.canonical({"cell": b}, {}).key


def test_sample_decode_encode_round_trip(joint):
    rng = np.random.default_rng(1)
    for _ in range(50):
        candidate = joint.decode(joint.sample(rng))
        assert joint.contains(candidate)
        assert joint.decode(joint.encode(candidate)).key == candidate.key


def test_seeded_sampling_repeats(joint):
    a = [joint.decode(joint.sample(np.random.default_rng(7))).key for _ in range(3)]
    assert len(set(a)) == 1


def test_mutation_changes_exactly_one_decision(joint):
    rng = np.random.default_rng(2)
    sample = joint.sample(rng)
    for _ in range(30):
        child = joint.mutate(sample, rng)
        assert sum(child[k] != sample[k] for k in sample) == 1
        joint.decode(child)


def test_decode_rejects_values_outside_the_space(joint):
    sample = joint.sample(np.random.default_rng(3))
    sample["bits:stem.conv"] = 3
    with pytest.raises(SpecError, match="one of"):
        joint.decode(sample)


def test_built_network_names_its_compression_slots(space, joint):
    torch = pytest.importorskip("torch")
    from cosearch.compressors import compression_slots

    rng = np.random.default_rng(4)
    for _ in range(6):
        candidate = joint.decode(joint.sample(rng))
        model = space.build(candidate.arch, (1, 8, 8), 10)
        assert sorted(compression_slots(model)) == sorted(space.layer_slots(candidate.arch))
        assert set(candidate.policy.layers) == set(space.layer_slots(candidate.arch))
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_space_parameters_are_validated():
    with pytest.raises(ValueError, match=r"`1 <= channels <= 4096` must hold, but got channels=0"):
        SEARCH_SPACES.create("nb201", channels=0)
    with pytest.raises(ValueError, match=r"cells_per_stage <= 64"):  # a typo must not enumerate slots for ever
        SEARCH_SPACES.create("nb201", cells_per_stage=10**12)
    with pytest.raises(SpecError, match="one of"):
        SEARCH_SPACES.get("nope")
