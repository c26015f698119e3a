from __future__ import annotations

import itertools

import numpy as np
import pytest

from cosearch.core.pareto import (
    _front_sweep,
    constrained_dominates,
    crowding_distance,
    dominates,
    hypervolume,
    nondominated_sort,
    pareto_front,
)


def brute_force_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Union of the boxes [p, ref] by summing the cells of the grid the coordinates make."""
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([points[:, k], [reference[k]]])) for k in range(points.shape[1])]
    volume = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = np.array([axes[k][i] for k, i in enumerate(cell)])
        high = np.array([axes[k][i + 1] for k, i in enumerate(cell)])
        if np.any(np.all(points <= low, axis=1)):
            volume += float(np.prod(high - low))
    return volume


def test_hypervolume_by_hand_2d():
    points = np.array([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]])
    # Staircase under reference (4, 4): 3x1 + 2x1 + 1x1 = 6.
    assert hypervolume(points, np.array([4.0, 4.0])) == pytest.approx(6.0)


def test_hypervolume_by_hand_3d():
    points = np.array([[0.0, 0.0, 0.0]])
    assert hypervolume(points, np.array([2.0, 3.0, 4.0])) == pytest.approx(24.0)
    two = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    # Two 2x1x1 and 1x2x1 boxes overlapping in a 1x1x1 cube, under reference (2, 2, 2).
    assert hypervolume(two, np.array([2.0, 2.0, 2.0])) == pytest.approx(3.0)


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("seed", range(8))
def test_hypervolume_matches_brute_force(m, seed):
    rng = np.random.default_rng(seed)
    points = rng.random((int(rng.integers(1, 12)), m))
    reference = np.full(m, 1.1)
    assert hypervolume(points, reference) == pytest.approx(brute_force_hypervolume(points, reference))


def test_hypervolume_ignores_points_beyond_reference_and_duplicates():
    reference = np.array([1.0, 1.0])
    assert hypervolume(np.array([[2.0, 0.0]]), reference) == 0.0
    once = hypervolume(np.array([[0.5, 0.5]]), reference)
    assert hypervolume(np.array([[0.5, 0.5], [0.5, 0.5], [0.7, 0.7]]), reference) == pytest.approx(once)


def test_dominance():
    assert dominates(np.array([1, 1]), np.array([1, 2]))
    assert not dominates(np.array([1, 1]), np.array([1, 1]))
    assert not dominates(np.array([0, 2]), np.array([1, 1]))


def test_constrained_domination_prefers_feasible_then_smaller_violation():
    good, bad = np.array([0.0, 0.0]), np.array([9.0, 9.0])
    assert constrained_dominates(bad, 0.0, good, 0.1)
    assert constrained_dominates(good, 0.1, bad, 0.2)
    assert not constrained_dominates(good, 0.2, bad, 0.1)


def test_nondominated_sort_fronts():
    values = np.array([[1, 4], [2, 2], [4, 1], [3, 3], [5, 5], [2, 5]], dtype=float)
    fronts = nondominated_sort(values)
    assert sorted(fronts[0]) == [0, 1, 2]
    assert sorted(fronts[1]) == [3, 5]
    assert fronts[2] == [4]


def test_nondominated_sort_constrained_puts_feasible_first():
    values = np.array([[0, 0], [5, 5], [6, 4]], dtype=float)
    violations = np.array([0.5, 0.0, 0.0])
    fronts = nondominated_sort(values, violations)
    assert sorted(fronts[0]) == [1, 2] and fronts[1] == [0]
    assert pareto_front(values, violations) == [1, 2]
    assert pareto_front(values, np.array([0.5, 0.2, 0.3])) == []  # nothing feasible: empty front


def test_crowding_distance_boundaries_infinite():
    values = np.array([[0, 3], [1, 2], [2, 1], [3, 0]], dtype=float)
    distance = crowding_distance(values)
    assert np.isinf(distance[0]) and np.isinf(distance[3])
    assert distance[1] == pytest.approx(distance[2]) and np.isfinite(distance[1])


def test_sorting_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 30))
        values = rng.integers(0, 5, (n, 2)).astype(float)
        violations = np.where(rng.random(n) < 0.3, rng.integers(1, 3, n), 0).astype(float)
        first = [
            i
            for i in range(n)
            if not any(constrained_dominates(values[j], violations[j], values[i], violations[i]) for j in range(n))
        ]
        assert sorted(nondominated_sort(values, violations)[0]) == first
        plain = [i for i in range(n) if not any(dominates(values[j], values[i]) for j in range(n))]
        assert pareto_front(values) == plain  # the 2-objective sweep
        fronts = nondominated_sort(values, violations)
        assert sorted(i for front in fronts for i in front) == list(range(n))


@pytest.mark.parametrize("objectives", [2, 3, 4])
def test_front_of_any_dimension_matches_pairwise_definition(objectives):
    """The sweep that keeps the front of 100,000 results cheap gives the definition's answer,
    ties, infinities (missing metrics) and chunk borders included."""
    rng = np.random.default_rng(objectives)
    for _ in range(150):
        n = int(rng.integers(1, 60))
        values = rng.integers(0, 4, (n, objectives)).astype(float)
        values[rng.random((n, objectives)) < 0.05] = np.inf
        violations = np.where(rng.random(n) < 0.3, rng.random(n), 0.0)
        plain = [i for i in range(n) if not any(dominates(values[j], values[i]) for j in range(n))]
        assert _front_sweep(values, chunk=int(rng.integers(1, 8))) == plain
        assert pareto_front(values) == plain
        feasible = [i for i in range(n) if violations[i] == 0.0]
        expected = [i for i in feasible if not any(dominates(values[j], values[i]) for j in feasible)]
        assert pareto_front(values, violations) == expected


def test_front_of_a_hundred_thousand_points_is_quick():
    values = np.random.default_rng(0).random((100_000, 3))
    front = pareto_front(values, np.zeros(len(values)))
    assert 20 < len(front) < 5000  # and it returns at all: the n x n matrix would need 30 GB
