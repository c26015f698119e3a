"""DARTS on the DARTS cell space: the relaxed network, its cost table and the derived genotypes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosearch.search_spaces import SEARCH_SPACES  # noqa: E402
from cosearch.search_spaces.darts import CELLS, OPS, STEPS, parse_genotype  # noqa: E402
from cosearch.strategies._darts_cells_torch import (  # noqa: E402
    EDGES,
    RelaxedDarts,
    derive,
    expected_cost,
    mixed_cell,
    parameter_free,
    per_edge,
)

SPACE = SEARCH_SPACES.create("darts", channels=4, layers=3)


def test_the_relaxed_cell_at_one_hot_weights_is_the_derived_cell():
    """Weights one-hot on two (op, input) pairs per node compute what the standalone cell does."""
    torch.manual_seed(0)
    supernet = SPACE.supernet((1, 8, 8), 10).eval()
    genotype = (
        "Genotype(normal=[('sep_conv_3x3', 0), ('skip_connect', 1), ('dil_conv_3x3', 2), ('max_pool_3x3', 0), "
        "('avg_pool_3x3', 1), ('sep_conv_5x5', 3), ('skip_connect', 4), ('dil_conv_5x5', 2)], normal_concat=[2, 3, 4, 5], "
        "reduce=[('max_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 2), ('avg_pool_3x3', 0), "
        "('dil_conv_3x3', 3), ('sep_conv_3x3', 1), ('skip_connect', 0), ('max_pool_3x3', 4)], reduce_concat=[2, 3, 4, 5])"
    )
    supernet.choose({"genotype": genotype})
    cells = parse_genotype(genotype)
    for index, kind in enumerate(supernet.kinds):
        cell = supernet.cells[index]
        weights = torch.zeros(len(EDGES), len(OPS))
        for position, (op, source) in enumerate(cells[kind]):
            weights[EDGES.index((2 + position // 2, source)), OPS.index(op)] = 1.0
        c_pp = cell.pre0[1].in_channels if hasattr(cell.pre0, "__getitem__") else cell.pre0.conv_1.in_channels
        c_p = cell.pre1[1].in_channels
        s0, s1 = torch.randn(2, c_pp, 4, 4), torch.randn(2, c_p, 4, 4)
        if index and supernet.kinds[index - 1] == "reduce":  # its input 0 is at twice the resolution
            s0 = torch.randn(2, c_pp, 8, 8)
        with torch.no_grad():
            np.testing.assert_allclose(
                mixed_cell(cell, s0, s1, weights, sampled=False).numpy(), cell(s0, s1).numpy(), atol=1e-5
            )


def test_the_relaxed_network_trains_its_logits_and_samples_under_gdas():
    torch.manual_seed(0)
    model = RelaxedDarts(SPACE.supernet((1, 8, 8), 10))
    x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    for tau in (None, 1.0):
        model.tau = tau
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        assert model.logits.grad is not None and model.logits.grad.abs().sum() > 0
    assert {id(p) for p in model.weights()}.isdisjoint({id(model.logits)})


def _case(seed: int):
    """Logits favouring separable convs, and an effect table (kinds x sources x ops) with convs dear."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(CELLS), len(EDGES), len(OPS)))
    logits[..., OPS.index("sep_conv_5x5")] += 2.0
    price = {"sep_conv_3x3": 0.6, "sep_conv_5x5": 1.0, "dil_conv_3x3": 0.4, "dil_conv_5x5": 0.7}
    effect = np.array([[[price.get(op, 0.02) * rng.uniform(0.8, 1.2) for op in OPS] for _ in range(2)] for _ in CELLS])
    effect[:, 0, OPS.index("skip_connect")] = effect[..., OPS.index("none")] = 0.0
    return logits, effect


def _estimate(genotype: dict, base: float, effect: np.ndarray) -> float:
    cells = parse_genotype(genotype["genotype"])
    return base + sum(
        effect[c, 0 if source < 2 else 1, OPS.index(op)] for c, kind in enumerate(CELLS) for op, source in cells[kind]
    )


def test_without_a_target_each_node_keeps_its_two_strongest_inputs_with_their_strongest_ops():
    logits, _ = _case(0)
    arch, estimate = derive(logits)
    assert estimate is None
    cells = parse_genotype(arch["genotype"])
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    for c, kind in enumerate(CELLS):
        for step in range(STEPS):
            node = 2 + step
            strength = {
                s: max(p[c, EDGES.index((node, s)), k] for k in range(len(OPS)) if OPS[k] != "none")
                for s in range(node)
            }
            kept = sorted(source for _, source in cells[kind][2 * step : 2 * step + 2])
            assert kept == sorted(sorted(strength, key=strength.get)[-2:])
            for op, source in cells[kind][2 * step : 2 * step + 2]:
                row = p[c, EDGES.index((node, source))]
                assert op == max((o for o in OPS if o != "none"), key=lambda o: row[OPS.index(o)])


@pytest.mark.parametrize("seed", range(4))
def test_a_genotype_derived_under_a_target_lands_in_the_band_below_it(seed):
    logits, effect = _case(seed)
    base = 1.0
    unconstrained, free_estimate = derive(logits, base, effect)
    assert free_estimate == pytest.approx(_estimate(unconstrained, base, effect))
    target = base + 0.5 * (free_estimate - base)  # half the argmax cell's cost above the reference
    arch, estimate = derive(logits, base, effect, target)
    assert estimate == pytest.approx(_estimate(arch, base, effect))
    assert 0.9 * target <= estimate <= target
    assert "none" not in arch["genotype"]
    cheapest, low = derive(logits, base, effect, base - 100.0)  # under every genotype: the cheapest
    assert low == pytest.approx(_estimate(cheapest, base, effect)) and low <= estimate


def test_expected_cost_at_one_hot_logits_weighs_each_edge_by_the_share_a_derived_node_keeps():
    _, effect = _case(0)
    model = RelaxedDarts(SPACE.supernet((1, 8, 8), 10))
    with torch.no_grad():
        model.logits.fill_(-1e4)
        model.logits[:, :, OPS.index("sep_conv_3x3")] = 1e4  # every edge of every cell: sep_conv_3x3
    with torch.no_grad():
        got = float(expected_cost(model, 1.0, torch.tensor(per_edge(effect), dtype=torch.float32)))
    table = per_edge(effect)[..., OPS.index("sep_conv_3x3")]  # kinds x edges
    want = 1.0 + sum(table[c, e] * 2 / node for c in range(len(CELLS)) for e, (node, _) in enumerate(EDGES))
    assert got == pytest.approx(want, rel=1e-5)  # 2 pairs kept per node, 8 per cell, at one op each


def test_the_cost_table_is_fitted_to_random_genotypes_and_recovers_an_additive_cost():
    """Priced by a cost that is a sum over kept pairs, the least-squares table is that cost's own; with an
    interaction between pairs, the leave-one-out error shows the misfit."""
    from cosearch.strategies._darts_cells_torch import FREE, op_costs, pair_counts, random_genotype

    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = random_genotype(rng)
        SPACE.validate_arch(arch)
        assert "none" not in arch["genotype"] and pair_counts(arch).sum() == 2 * 2 * STEPS
    truth = np.where(FREE, rng.uniform(0.0, 1.0, FREE.shape), 0.0)
    priced = []

    def additive(evaluator, arch, metric, data):
        priced.append(arch)
        return 3.0 + float((pair_counts(arch) * truth).sum())

    base, effect, fit = op_costs(None, "latency_ms", None, additive, np.random.default_rng(1))
    assert len(priced) == fit["architectures"] > FREE.sum() + 1  # more genotypes than unknowns
    assert base == pytest.approx(3.0) and np.allclose(effect, truth)
    assert fit["loo_relative_error_max"] < 1e-9

    def interacting(evaluator, arch, metric, data):  # two pools in one cell cost extra
        counts = pair_counts(arch)
        return additive(evaluator, arch, metric, data) + 0.5 * (counts[..., OPS.index("max_pool_3x3")].sum() > 1)

    *_, fit = op_costs(None, "latency_ms", None, interacting, np.random.default_rng(1))
    assert fit["loo_relative_error_max"] > 1e-3


def test_parameter_free_counts_the_kept_pairs():
    arch, _ = derive(_case(1)[0])
    cells = parse_genotype(arch["genotype"])
    assert parameter_free(arch) == sum(
        op in ("skip_connect", "max_pool_3x3", "avg_pool_3x3") for k in CELLS for op, _ in cells[k]
    )


def test_a_search_on_the_darts_space_prices_pairs_and_derives_a_genotype_under_its_target():
    """The whole search on a tiny DARTS network, priced by size (exact): every conv op costs more than
    a pool, a strided reduction-cell input more than an inner one, and the genotype lands under T."""
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._darts_torch import search

    job = spec_from_dict(
        {
            "search_space": {"name": "darts", "channels": 4, "layers": 3},
            "task": {"dataset": "digits", "image_size": 8},
            "strategy": {"name": "darts"},
            "objectives": ["accuracy", "size_kb"],
            "budgets": ["size_kb <= 100"],
            "latency": {"warmup_runs": 1, "runs": 30},  # priced by size: latency is measured but not used
        }
    )
    from cosearch.strategies._darts_cells_torch import op_costs
    from cosearch.strategies._darts_torch import arch_cost

    evaluator = build.make_evaluator(job)
    base, effect, fit = op_costs(evaluator, "size_kb", evaluator.data.load(), arch_cost, np.random.default_rng(0))
    assert effect.shape == (len(CELLS), 2, len(OPS))
    assert fit["loo_relative_error_max"] < 1e-3  # size is a sum over the kept pairs: the linear model is exact
    for c in range(len(CELLS)):
        for source in range(2):
            convs = [effect[c, source, OPS.index(op)] for op in OPS if "conv" in op]
            assert min(convs) > effect[c, source, OPS.index("max_pool_3x3")]
    target = base + 0.5 * float(effect.max()) * 8  # room for some convs, not for every pair's dearest
    out = search(evaluator, 1, "additive", 1.0, "beta", 0.5, 0.05, seed=0, metric="size_kb", target=target)
    assert out["cost_table"]["reference"] == pytest.approx(base)
    assert np.allclose(out["cost_table"]["effect"], effect, atol=1e-6)  # the same genotypes priced
    SPACE.validate_arch(out["arch"])
    assert out["cell"] is None and "none" not in out["arch"]["genotype"]
    assert 0.9 * target <= out["derived_estimate"] <= target
    assert len(out["history"]) == 1 and np.array(out["logits"]).shape == (len(CELLS), len(EDGES), len(OPS))
    assert out["parameter_free_edges"] == parameter_free(out["arch"])
