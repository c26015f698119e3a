"""The darts strategy: its work items, what it asks once a search is handed back, the relaxed
cell it trains, and a run on the digits through the controller."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosearch.core import Constraint, Goals, Objective, SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.strategies import STRATEGIES

SPACE = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)
JOINT = JointSpace(SPACE, weight_bits=[4, 8], sparsity=[0.0, 0.5])
GOALS = Goals(
    (Objective.parse("accuracy"),), (Constraint.parse("latency_ms <= 0.2"), Constraint.parse("size_kb <= 50"))
)
CELL = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|nor_conv_3x3~2|"


TABLE = {"metric": "latency_ms@local-cpu", "reference": 0.1, "effect": [[0.0] * 5] * 6, "fit": None, "seconds": 1.0}


def search_work(strategy):
    """The strategy's target searches, the latency table handed to it first when it asks for one."""
    work = strategy.work()
    if [w.key for w in work] == ["darts:costs"]:
        strategy.worked("darts:costs", TABLE)
        work = strategy.work()
    return work


def test_the_latency_table_first_then_one_search_per_latency_target_then_its_cells_first():
    strategy = STRATEGIES.create("darts", JOINT, GOALS, seed=2, targets=(0.5, 1.0), epochs=3)
    (costs,) = strategy.work()  # priced once, for every target's search, before any of them runs
    assert costs.key == "darts:costs" and costs.function == "cosearch.strategies._darts_torch:price"
    assert costs.args == {"metric": "latency_ms@local-cpu", "seed": 2}
    strategy.worked("darts:costs", TABLE)
    work = strategy.work()
    assert [w.key for w in work] == ["darts:0.5", "darts:1"]
    assert [w.args["target"] for w in work] == [0.1, 0.2] and {w.args["metric"] for w in work} == {
        "latency_ms@local-cpu"
    }
    assert all(w.args["cost_table"] == TABLE for w in work)
    assert work[0].function == "cosearch.strategies._darts_torch:search" and work[0].args["epochs"] == 3
    strategy.worked("darts:0.5", {"cell": CELL, "target": 0.1, "expected": 0.12})
    assert [w.key for w in strategy.work()] == ["darts:1"]  # what is handed back is not asked for again
    candidate = strategy.ask()
    assert candidate.arch == {"cell": CELL} and JOINT.contains(candidate)
    # the searches choose the cell; its compression starts at the mildest options searched
    assert {(lp.weight_bits, lp.sparsity) for lp in candidate.policy.layers.values()} == {(8, 0.0)}
    state = json.loads(json.dumps(strategy.state_dict()))
    again = STRATEGIES.create("darts", JOINT, GOALS, seed=9, targets=(0.5, 1.0))
    again.load_state_dict(state)
    assert [w.key for w in again.work()] == ["darts:costs"]  # a resumed run is handed the stored table back
    again.worked("darts:costs", TABLE)
    assert [w.key for w in again.work()] == ["darts:1"]
    strategy.worked("darts:1", {"cell": CELL, "target": 0.2, "expected": 0.2})
    assert strategy.work() == []  # every search done: the table is not asked for again


def test_without_a_latency_budget_one_plain_search():
    goals = Goals((Objective.parse("accuracy"),), (Constraint.parse("size_kb <= 50"),))
    (work,) = STRATEGIES.create("darts", JOINT, goals, seed=0).work()
    assert work.args["metric"] is None and work.args["latency_weight"] == 0.0


def test_other_spaces_are_refused_with_the_job_field():
    enas_space = JointSpace(SEARCH_SPACES.create("enas", channels=4))
    with pytest.raises(SpecError, match=r"strategy: .*'nb201', 'darts'"):
        STRATEGIES.create("darts", enas_space, GOALS, seed=0)


def test_on_the_darts_space_the_cell_is_searched_and_the_bits_start_mildest():
    """A BitOps budget relaxes NB201's bits; the DARTS space's relaxation has no bit logits, so its
    derived genotype starts at the mildest bits searched, and the evolution after it searches them."""
    darts_space = JointSpace(SEARCH_SPACES.create("darts", channels=4, layers=3), weight_bits=[4, 8])
    goals = Goals(
        (Objective.parse("accuracy"),), (Constraint.parse("latency_ms <= 0.2"), Constraint.parse("bitops <= 1e9"))
    )
    strategy = STRATEGIES.create("darts", darts_space, goals, seed=0, targets=(1.0,))
    (work,) = search_work(strategy)
    assert work.args["weight_options"] is None and work.args["bits_weight"] == 0.0
    assert search_work(STRATEGIES.create("darts", JOINT, goals, seed=0))[0].args["weight_options"] == [4, 8]
    from cosearch.search_spaces.darts import format_genotype

    genotype = format_genotype(
        {
            "normal": [("sep_conv_3x3", 0), ("skip_connect", 1)] * 4,
            "reduce": [("max_pool_3x3", 0), ("sep_conv_5x5", 1)] * 4,
        }
    )
    strategy.worked("darts:1", {"arch": {"genotype": genotype}, "cell": None, "target": 0.2, "expected": 0.2})
    candidate = strategy.ask()
    assert darts_space.contains(candidate) and set(candidate.arch) == {"genotype"}
    assert {lp.weight_bits for lp in candidate.policy.layers.values()} == {8}


def test_the_relaxed_cell_at_one_hot_weights_is_the_chosen_cell():
    torch = pytest.importorskip("torch")
    from cosearch.search_spaces.nb201 import EDGES, OPS, parse_arch_str
    from cosearch.strategies._darts_torch import mixed_cell

    supernet = SPACE.supernet((1, 8, 8), 10).eval()
    ops = parse_arch_str("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|skip_connect~1|none~2|")
    weights = torch.zeros(len(EDGES), len(OPS))
    for e, edge in enumerate(EDGES):
        weights[e, OPS.index(ops[edge])] = 1.0
    cell = supernet.stage1[0]
    x = torch.randn(2, 8, 4, 4)
    cell.set_ops(ops)
    with torch.no_grad():
        np.testing.assert_allclose(mixed_cell(cell, x, weights).numpy(), cell(x).numpy(), atol=1e-6)


def test_a_search_trains_the_logits_and_prices_ops_as_the_job_measures(tmp_path):
    pytest.importorskip("torch")
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.search_spaces.nb201 import OPS
    from cosearch.strategies._darts_torch import search

    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "strategy": {"name": "darts"},
            "evaluator": {"name": "train"},
            "objectives": ["accuracy", "size_kb"],
            "budgets": ["size_kb <= 100"],
        }
    )
    evaluator = build.make_evaluator(job)
    out = search(evaluator, 2, "additive", 1.0, "beta", 0.5, 0.05, seed=0, metric="size_kb", target=1.0)
    assert SPACE.validate_arch({"cell": out["cell"]}) is None and "none" not in out["cell"]
    effect = np.array(out["cost_table"]["effect"])
    assert np.all(effect[:, OPS.index("skip_connect")] == 0.0)
    conv3, conv1 = effect[:, OPS.index("nor_conv_3x3")], effect[:, OPS.index("nor_conv_1x1")]
    assert np.all(conv3 > conv1) and np.all(conv1 > 0)  # size: a 3x3 conv's weights outweigh a 1x1's
    assert out["cost_table"]["fit"]["loo_relative_error_max"] < 1e-6  # size is a sum over edges: fitted exactly
    assert len(out["history"]) == 2 and out["history"][-1]["expected"] < out["history"][0]["expected"] + 1e-9
    assert not np.allclose(out["logits"], 0.0, atol=1e-2)  # the logits moved


@pytest.mark.parametrize(("guard", "order"), [("gdas", 1), ("none", 2)])
def test_gdas_sampling_and_the_second_order_gradient_run_and_move_the_logits(guard, order):
    pytest.importorskip("torch")
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._darts_torch import search

    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "strategy": {"name": "darts"},
            "objectives": ["accuracy", "size_kb"],
        }
    )
    out = search(build.make_evaluator(job), 2, "additive", 0.0, guard, 0.5, 0.05, seed=0, order=order)
    assert "none" not in out["cell"] and not np.allclose(out["logits"], 0.0, atol=1e-2)
    assert out["how"].startswith("first-order" if order == 1 else "second-order")
    assert (out["history"][0]["tau"] == 10.0) == (guard == "gdas")


def test_the_second_order_gradient_matches_a_direct_computation():
    """The finite-difference Hessian-vector product against autograd's exact one, on a tiny net."""
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    from cosearch.strategies._darts_torch import RelaxedNB201, _second_order_logit_grad

    torch.manual_seed(0)
    model = RelaxedNB201(SPACE.supernet((1, 8, 8), 10)).double().eval()  # eval: BatchNorm fixed, so exact
    x, y = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    xv, yv = torch.randn(8, 1, 8, 8, dtype=torch.float64), torch.randint(0, 10, (8,))
    xi = 0.01
    # DARTS's radius 0.01 is for float32; in float64 a small one makes the difference exact to ~1e-8
    _second_order_logit_grad(model, (x, y), (xv, yv), xi, 0.0, lambda ce, guard: ce, radius=1e-5)
    approx = model.logits.grad.clone()
    # exact: d/d(alpha) of L_val(w - xi * dL_train/dw(w, alpha), alpha)
    weights = model.weights()
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), weights, create_graph=True)
    virtual = [w - xi * g for w, g in zip(weights, grads)]
    names = [n for n, _ in model.named_parameters() if n != "logits"]
    params = {**dict(zip(names, virtual)), "logits": model.logits}
    buffers = dict(model.named_buffers())
    value = F.cross_entropy(torch.func.functional_call(model, {**params, **buffers}, (xv,)), yv)
    exact = torch.autograd.grad(value, model.logits)[0]
    np.testing.assert_allclose(approx.numpy(), exact.detach().numpy(), rtol=1e-3, atol=1e-6)


def test_a_bitops_budget_relaxes_each_layers_bits_and_the_derived_policy_carries_them():
    goals = Goals(
        (Objective.parse("accuracy"),), (Constraint.parse("latency_ms <= 0.2"), Constraint.parse("bitops <= 1e7"))
    )
    strategy = STRATEGIES.create("darts", JOINT, goals, seed=0, targets=(1.0,))
    (work,) = search_work(strategy)
    assert work.args["weight_options"] == [4, 8] and work.args["bits_metric"] == "bitops"
    assert work.args["bits_target"] == 1e7 and work.args["input_bits"] == 32
    assert work.args["input_options"] == [32]  # the job searches no activation bits
    bits = {slot: 4 if k % 2 else 8 for k, slot in enumerate(SPACE.all_slots())}
    strategy.worked(work.key, {"cell": CELL, "weight_bits": bits})
    candidate = strategy.ask()
    assert all(lp.weight_bits == bits[slot] for slot, lp in candidate.policy.layers.items())
    with_inputs = JointSpace(SPACE, weight_bits=[4, 8], sparsity=[0.0], activation_bits=[8, 32])
    strategy = STRATEGIES.create("darts", with_inputs, goals, seed=0, targets=(1.0,))
    (work,) = search_work(strategy)
    assert work.args["input_options"] == [8, 32]
    inputs = dict.fromkeys(SPACE.all_slots(), 8)
    strategy.worked(work.key, {"cell": CELL, "weight_bits": bits, "activation_bits": inputs})
    assert {lp.activation_bits for lp in strategy.ask().policy.layers.values()} == {8}
    # without a budget the bits change (size or BitOps), they are not relaxed
    latency_only = Goals((Objective.parse("accuracy"),), (Constraint.parse("latency_ms <= 0.2"),))
    assert search_work(STRATEGIES.create("darts", JOINT, latency_only, seed=0))[0].args["weight_options"] is None


def test_expected_bitops_at_one_hot_logits_is_the_derived_networks_bitops():  # weight and input bits
    torch = pytest.importorskip("torch")
    from cosearch.core.candidate import LayerPolicy, Policy
    from cosearch.hardware.layers import bitops, layer_shapes
    from cosearch.search_spaces.nb201 import EDGES, OPS, parse_arch_str
    from cosearch.strategies._darts_torch import RelaxedNB201, expected_bit_cost, layer_sizes

    cell = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    ops = parse_arch_str(cell)
    model = RelaxedNB201(SPACE.supernet((1, 8, 8), 10), [4, 8], [8, 32])
    bits, inputs = {}, {}
    with torch.no_grad():
        model.logits.fill_(-60.0)
        for e, edge in enumerate(EDGES):
            model.logits[e, OPS.index(ops[edge])] = 60.0
        for k, (key, logits) in enumerate(model.bit_logits.items()):
            bits[key.replace("__", ".")] = [4, 8][k % 2]
            logits.copy_(torch.tensor([60.0, -60.0] if k % 2 == 0 else [-60.0, 60.0]))
        for k, (key, logits) in enumerate(model.input_bit_logits.items()):
            inputs[key.replace("__", ".")] = [8, 32][k % 3 == 0]
            logits.copy_(torch.tensor([-60.0, 60.0] if k % 3 == 0 else [60.0, -60.0]))
    expected = float(expected_bit_cost(model, layer_sizes(model, (1, 8, 8)), "bitops", 32).detach())
    policy = Policy({slot: LayerPolicy(weight_bits=b, activation_bits=inputs[slot]) for slot, b in bits.items()})
    standalone = SPACE.build({"cell": cell}, (1, 8, 8), 10)
    assert expected == pytest.approx(bitops(layer_shapes(standalone, (1, 8, 8), policy)), rel=1e-4)


def test_a_tight_bitops_budget_pulls_the_bits_down():
    pytest.importorskip("torch")
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._darts_torch import search

    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "strategy": {"name": "darts"},
            "objectives": ["accuracy", "bitops"],
        }
    )
    out = search(
        build.make_evaluator(job), 2, "additive", 0.0, "beta", 0.5, 0.1, seed=0,
        weight_options=[4, 8, 32], bits_metric="bitops", bits_target=1e5, bits_weight=2.0, input_options=[8, 32],
    )  # fmt: skip
    chosen = list(out["weight_bits"].values())
    assert set(out["weight_bits"]) == set(SPACE.all_slots()) and chosen.count(4) > len(chosen) / 2
    inputs = list(out["activation_bits"].values())
    assert set(out["activation_bits"]) == set(SPACE.all_slots()) and inputs.count(8) > len(inputs) / 2
    assert out["history"][-1]["expected_bits_cost"] < out["history"][0]["expected_bits_cost"]


def test_a_job_with_darts_and_an_evaluator_without_data_is_refused_before_anything_runs():
    from cosearch import build
    from cosearch.job import spec_from_dict

    job = spec_from_dict({"strategy": {"name": "darts"}, "evaluator": {"name": "synthetic"}})
    with pytest.raises(SpecError, match=r"evaluator: .*strategy 'darts' trains on it"):
        build.check(job)


def _derivation_case(seed: int):
    """Logits and an additive latency table of NB201's edges and ops (a 3x3 conv dearest)."""
    from cosearch.search_spaces.nb201 import EDGES, OPS

    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1, (len(EDGES), len(OPS)))
    logits[:, OPS.index("nor_conv_3x3")] += 2.0  # the argmax would take the slowest op nearly everywhere
    price = {"none": 0.0, "skip_connect": 0.0, "nor_conv_1x1": 0.3, "nor_conv_3x3": 1.0, "avg_pool_3x3": 0.1}
    effect = np.array([[price[op] * rng.uniform(0.8, 1.2) for op in OPS] for _ in EDGES])
    return logits, effect


def _estimate_and_score(cell: list[int], logits, base: float, effect) -> tuple[float, float]:
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return base + sum(effect[e, k] for e, k in enumerate(cell)), sum(log_p[e, k] for e, k in enumerate(cell))


@pytest.mark.parametrize("seed", range(5))
def test_a_cell_derived_under_a_target_is_the_most_probable_in_the_band_below_it(seed):
    """The argmax of the relaxed cell overshoots the target its expectation met; the budget derivation
    lands in [0.9 T, T], and no cell there (of 3000 random ones) is more probable."""
    from cosearch.search_spaces.nb201 import OPS
    from cosearch.strategies._darts_torch import TARGET_BAND, derive

    logits, effect = _derivation_case(seed)
    base, target = 1.0, 3.5
    argmax = derive(logits)
    assert OPS.index("none") not in argmax
    assert argmax == [max((k for k in range(len(OPS)) if OPS[k] != "none"), key=lambda k: row[k]) for row in logits]
    assert _estimate_and_score(argmax, logits, base, effect)[0] > target
    cell = derive(logits, base, effect, target)
    estimate, score = _estimate_and_score(cell, logits, base, effect)
    assert (1 - TARGET_BAND) * target <= estimate <= target and OPS.index("none") not in cell
    rng = np.random.default_rng(100 + seed)
    allowed = [k for k in range(len(OPS)) if OPS[k] != "none"]
    for other in rng.choice(allowed, size=(3000, len(logits))).tolist():
        other_estimate, other_score = _estimate_and_score(other, logits, base, effect)
        if (1 - TARGET_BAND) * target <= other_estimate <= target:
            assert other_score <= score + 1e-9


def test_a_target_the_band_misses_takes_the_most_probable_cell_under_it_and_one_under_all_the_cheapest():
    from cosearch.search_spaces.nb201 import OPS
    from cosearch.strategies._darts_torch import derive

    logits, effect = _derivation_case(0)
    effect[:, OPS.index("avg_pool_3x3")] = 0.0
    effect[:, OPS.index("nor_conv_1x1")] = effect[:, OPS.index("nor_conv_3x3")] = 10.0  # one conv overshoots
    cell = derive(logits, 1.0, effect, 5.0)  # band [4.5, 5]: empty; under 5: no conv at all
    free = [OPS.index("skip_connect"), OPS.index("avg_pool_3x3")]
    assert cell == [max(free, key=lambda k: row[k]) for row in logits]  # the most probable of those
    cheapest = derive(logits, 1.0, _derivation_case(0)[1], 0.5)  # under every cell: the cheapest one
    assert all(OPS[k] == "skip_connect" for k in cheapest)


def test_the_derivation_is_a_validated_strategy_setting():
    assert search_work(STRATEGIES.create("darts", JOINT, GOALS))[0].args["derivation"] == "budget"
    strategy = STRATEGIES.create("darts", JOINT, GOALS, derivation="argmax")
    assert {w.args["derivation"] for w in search_work(strategy)} == {"argmax"}
    from cosearch import build
    from cosearch.job import spec_from_dict

    job = {"search_space": {"name": "nb201"}, "budgets": ["latency_ms <= 1"]}
    with pytest.raises(SpecError, match=r"strategy\.derivation.*'budget', 'argmax'"):
        build.validate_strategy(spec_from_dict({**job, "strategy": {"name": "darts", "derivation": "best"}}))


def test_a_derived_cell_that_misses_its_band_is_priced_and_derived_again(monkeypatch):
    """Latency is not a sum over edges: with a cost that grows as the square root of the ops' work and
    a table of one-edge effects, the table's sum overshoots, the first cell lands under the band, and
    the rescaled table's cell lands in it, as the job's cost path prices it."""
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.search_spaces.nb201 import parse_arch_str
    from cosearch.strategies import _darts_torch

    work = {"nor_conv_3x3": 1.0, "nor_conv_1x1": 0.4, "avg_pool_3x3": 0.05, "skip_connect": 0.0, "none": 0.0}

    def priced(evaluator, arch, metric, data):
        return 1.0 + 10.0 * sum(work[op] for op in parse_arch_str(arch["cell"]).values()) ** 0.5

    monkeypatch.setattr(_darts_torch, "arch_cost", priced)
    job = spec_from_dict(
        {
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "task": {"dataset": "digits", "image_size": 8},
            "strategy": {"name": "darts"},
            "budgets": ["latency_ms <= 1"],
        }
    )
    target = 1.0 + 10.0 * 2.4**0.5  # the price of about two 3x3 convs and a 1x1
    # A table of one-edge effects (each op alone on the all-skip cell): their sum overshoots the root.
    from cosearch.search_spaces.nb201 import EDGES, OPS

    effect = [[10.0 * work[op] ** 0.5 for op in OPS] for _ in EDGES]
    table = {"metric": "latency_ms@local-cpu", "reference": 1.0, "effect": effect, "fit": None, "seconds": 0.0}
    out = _darts_torch.search(build.make_evaluator(job), 1, "additive", 1.0, "beta", 0.5, 0.05, seed=0,
                              metric="latency_ms@local-cpu", target=target, cost_table=table)  # fmt: skip
    tries = out["derived_priced"]
    assert len(tries) >= 2 and not (0.9 * target <= tries[0]["priced"] <= target)  # the sum misled the first
    assert 0.9 * target <= tries[-1]["priced"] <= target and tries[-1]["scale"] != 1.0
    assert priced(None, out["arch"], None, None) == tries[-1]["priced"] and out["table_scale"] == tries[-1]["scale"]
