"""The Gaussian-process strategy's parts: hypervolume gain, the surrogate, parallel asks."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch.core import Goals, Objective, Result, hypervolume
from cosearch.evaluators.synthetic import SyntheticEvaluator
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.strategies import STRATEGIES
from cosearch.strategies.gp import hypervolume_gain

SPACE = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
JOINT = JointSpace(SPACE)
TWO = Goals((Objective.parse("accuracy"), Objective.parse("latency_ms")))


@pytest.mark.parametrize("dims", [1, 2, 3, 4])
def test_hypervolume_gain_is_the_difference_of_hypervolumes(dims):
    rng = np.random.default_rng(dims)
    reference = np.ones(dims)
    for _ in range(20):
        front = rng.uniform(0.0, 1.2, size=(int(rng.integers(1, 7)), dims))  # some beyond the reference
        points = rng.uniform(-0.1, 1.2, size=(15, dims))
        base = hypervolume(front, reference)
        expected = [hypervolume(np.vstack([front, p[None, :]]), reference) - base for p in points]
        np.testing.assert_allclose(hypervolume_gain(front, points, reference), expected, atol=1e-12)


def told_strategy(n: int, **params):
    strategy = STRATEGIES.create("gp", JOINT, TWO, seed=0, **params)
    evaluator = SyntheticEvaluator(SPACE)
    for _ in range(n):
        candidate = strategy.ask()
        strategy.tell(candidate, evaluator.evaluate(candidate).result)
    return strategy


def test_the_surrogate_fits_what_it_was_told_and_is_unsure_far_away():
    strategy = told_strategy(30)
    model = strategy._fit("accuracy")
    genomes = [a[0] for a in strategy.archive]
    told = np.array([a[1]["accuracy"] for a in strategy.archive])
    mean, std = model.predict(strategy._features(genomes))
    assert np.corrcoef(mean, told)[0, 1] > 0.9
    fresh = [JOINT.encode(JOINT.decode(JOINT.sample(np.random.default_rng(100 + k)))) for k in range(20)]
    _, std_fresh = model.predict(strategy._features(fresh))
    assert np.median(std_fresh) > 2 * np.median(std)


def test_count_features_hold_each_shared_option_lists_shares():
    strategy = told_strategy(5)
    names = {tuple(names) for _, names in strategy._lists}
    assert tuple(f"cell.e{a}" for a in ("0_1", "0_2", "1_2", "0_3", "1_3", "2_3")) in names
    rows = strategy._features([told[0] for told in strategy.archive])
    column = strategy._width
    for options, _ in strategy._lists:
        np.testing.assert_allclose(rows[:, column : column + len(options)].sum(axis=1), 1.0)
        column += len(options)
    assert column == rows.shape[1]


def test_the_same_operations_on_other_edges_are_nearer_with_counts_and_plain_hamming_without():
    genome = dict(told_strategy(1).archive[0][0])
    genome["cell.e0_1"], genome["cell.e2_3"] = "nor_conv_3x3", "avg_pool_3x3"
    swapped = {**genome, "cell.e0_1": "avg_pool_3x3", "cell.e2_3": "nor_conv_3x3"}
    similarity = {}
    for weight in (0.0, 0.6):
        strategy = STRATEGIES.create("gp", JOINT, TWO, seed=0, count_weight=weight)
        rows = strategy._features([genome, swapped])
        model = strategy._gp(rows[:1], np.zeros(1), 1.0, 1e-3)
        similarity[weight] = float(model.kernel(rows[1:])[0, 0])
    groups = {c.group for c in JOINT.choices() if len(c.options) > 1}
    hamming = 2 / (6 * len(groups))  # two of the six cell edges differ; each group weighs the same
    assert similarity[0.0] == pytest.approx(np.exp(-hamming))
    assert similarity[0.6] == pytest.approx(np.exp(-0.4 * hamming))  # the op counts are equal


def test_parallel_asks_are_distinct_and_believed_until_told():
    strategy = told_strategy(12)
    asked = [strategy.ask() for _ in range(4)]
    assert len({c.key for c in asked}) == 4
    assert all(JOINT.contains(c) for c in asked)
    assert set(strategy.pending) == {c.key for c in asked}
    strategy.tell(asked[0], Result.failed(asked[0], "InjectedFailure"))
    assert asked[0].key not in strategy.pending


def test_a_failed_or_broken_result_does_not_enter_the_surrogate():
    strategy = told_strategy(12)
    candidate = strategy.ask()
    strategy.tell(candidate, Result.failed(candidate, "InjectedFailure"))
    assert strategy.archive[-1][1] == {}
    assert strategy.ask() is not None


def test_optimism_defaults_to_less_with_several_objectives_and_can_be_set():
    one = Goals((Objective.parse("accuracy"),))
    assert STRATEGIES.create("gp", JOINT, one).optimism == 1.0
    assert STRATEGIES.create("gp", JOINT, TWO).optimism == 0.5
    assert STRATEGIES.create("gp", JOINT, TWO, optimism=2).optimism == 2.0


@pytest.mark.parametrize(
    "params, message",
    [
        ({"initial_samples": 1}, "initial_samples"),
        ({"pool_size": 0}, "pool_size"),
        ({"optimism": -1.0}, "optimism"),
        ({"refit_every": 0}, "refit_every"),
        ({"reference_quantile": 0.2}, "reference_quantile"),
        ({"tame_quantile": 1.5}, "tame_quantile"),
        ({"count_weight": 1.0}, "count_weight"),
        ({"count_weight": -0.1}, "count_weight"),
    ],
)
def test_bad_parameters_raise_naming_them(params, message):
    with pytest.raises(ValueError, match=message):
        STRATEGIES.create("gp", JOINT, TWO, **params)


def test_the_kept_pareto_set_is_the_archives_first_front_through_failures_budgets_evictions_and_resume():
    """The parents' set is kept as results come (no sort of the whole history per ask): it must
    equal the constrained first front of what is archived, with failures, budget breakers and the
    oldest non-members evicted, and again after a resume."""
    from cosearch.core import Constraint
    from cosearch.core.pareto import nondominated_sort

    goals = Goals(TWO.objectives, (Constraint.parse("latency_ms<=0.5"),))
    strategy = STRATEGIES.create("gp", JOINT, goals, seed=0, history_size=15, initial_samples=4)
    rng = np.random.default_rng(3)
    for k in range(60):
        candidate = strategy.ask()
        if k % 9 == 4:
            result = Result.failed(candidate, "InjectedFailure")
        else:  # a coarse grid, so that ties and equal points occur
            metrics = {"accuracy": float(rng.integers(0, 5)) / 4, "latency_ms": float(rng.integers(0, 5)) / 4}
            result = Result(candidate, "ok", metrics)
        strategy.tell(candidate, result)
        values = np.array([a[2] for a in strategy.archive], dtype=float)
        violations = np.array([a[3] for a in strategy.archive], dtype=float)
        assert strategy._front == nondominated_sort(values, violations)[0]
        assert len(strategy.archive) == len(strategy._rows) == min(k + 1, 15)
    resumed = STRATEGIES.create("gp", JOINT, goals, seed=0, history_size=15)
    resumed.load_state_dict(strategy.state_dict())
    assert resumed._front == strategy._front
    np.testing.assert_array_equal(np.array(resumed._rows), np.array(strategy._rows))
