"""Pareto maths in minimisation form: constrained non-dominated sorting, crowding, hypervolume."""

from __future__ import annotations

import numpy as np


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    """True when `a` is no worse than `b` everywhere and better somewhere (minimisation)."""
    return bool(np.all(a <= b) and np.any(a < b))


def constrained_dominates(a: np.ndarray, va: float, b: np.ndarray, vb: float) -> bool:
    """Deb's rule: feasible beats infeasible, less violation beats more, else Pareto dominance."""
    if va == 0.0 and vb == 0.0:
        return dominates(a, b)
    if va == 0.0:
        return True
    if vb == 0.0:
        return False
    return va < vb


def domination_matrix(values: np.ndarray, violations: np.ndarray | None = None) -> np.ndarray:
    """`D[i, j]` is True when point i (constrained-)dominates point j; vectorised `constrained_dominates`."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    violations = np.zeros(n) if violations is None else np.asarray(violations, dtype=float)
    a, b = values[:, None, :], values[None, :, :]
    pareto = np.all(a <= b, axis=2) & np.any(a < b, axis=2)
    feasible = violations == 0.0
    both_feasible = feasible[:, None] & feasible[None, :]
    both_infeasible = ~feasible[:, None] & ~feasible[None, :]
    return (
        (both_feasible & pareto)
        | (feasible[:, None] & ~feasible[None, :])
        | (both_infeasible & (violations[:, None] < violations[None, :]))
    )


def nondominated_sort(values: np.ndarray, violations: np.ndarray | None = None) -> list[list[int]]:
    """Fronts of indices, best first (Deb et al. 2002, constrained variant when violations are given)."""
    n = len(values)
    if n == 0:
        return []
    dominates_matrix = domination_matrix(values, violations)
    count = dominates_matrix.sum(axis=0)
    fronts: list[list[int]] = []
    current = np.flatnonzero(count == 0)
    while len(current):
        fronts.append([int(i) for i in current])
        count = count - dominates_matrix[current].sum(axis=0)
        count[current] = -1  # placed
        current = np.flatnonzero(count == 0)
    return fronts


def pareto_front(values: np.ndarray, violations: np.ndarray | None = None) -> list[int]:
    """Indices of the first front; with violations, only feasible points can be on it."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return []
    if violations is not None:  # a feasible point is never dominated by an infeasible one
        feasible = np.flatnonzero(np.asarray(violations, dtype=float) == 0.0)
        return sorted(int(feasible[i]) for i in pareto_front(values[feasible])) if len(feasible) else []
    if values.shape[1] == 2:
        return _front_2d(values)
    if len(values) <= MATRIX_UP_TO:  # small: the vectorised pairwise test is fastest
        return np.flatnonzero(~_dominated(values, values)).tolist()
    return _front_sweep(values)


def _dominated(points: np.ndarray, by: np.ndarray) -> np.ndarray:
    """Whether each of `points` is dominated by some row of `by` (minimisation)."""
    a, b = by[None, :, :], points[:, None, :]
    return np.any(np.all(a <= b, axis=2) & np.any(a < b, axis=2), axis=1)


MATRIX_UP_TO = 256  # points; above, the n x n test's memory and time grow faster than the sweep's


def _front_sweep(values: np.ndarray, chunk: int = 1024) -> list[int]:
    """Non-dominated points of any dimension without the n x n matrix: a point can only be
    dominated by one before it in lexicographic order, so in that order each point is compared
    with the front found so far (first a chunk at a time against it, vectorised)."""
    n, m = values.shape
    order = np.lexsort(values.T[::-1])
    front = np.empty((16, m))
    size, kept = 0, []
    for start in range(0, n, chunk):
        indices = order[start : start + chunk]
        if size:
            indices = indices[~_dominated(values[indices], front[:size])]
        for i in indices:
            if size and _dominated(values[i][None, :], front[:size])[0]:
                continue
            if size == len(front):
                front = np.concatenate([front, np.empty_like(front)])
            front[size] = values[i]
            size += 1
            kept.append(int(i))
    return sorted(kept)


def _front_2d(values: np.ndarray) -> list[int]:
    """Sort-and-sweep front for two objectives: O(n log n), for fronts of whole benchmark tables."""
    order = np.lexsort((values[:, 1], values[:, 0]))
    front, best_y, last = [], np.inf, None
    for i in order:
        x, y = values[i]
        if last is None or y < best_y:  # the first point in (x, y) order is never dominated
            front.append(int(i))
            best_y, last = y, (x, y)
        elif last is not None and (x, y) == last:
            front.append(int(i))  # an exact duplicate of a front point is not dominated either
    return sorted(front)


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within one front (boundary points get inf)."""
    n, m = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        span = values[order[-1], k] - values[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span == 0 or not np.isfinite(span):
            continue
        distance[order[1:-1]] += (values[order[2:], k] - values[order[:-2], k]) / span
    return distance


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Exact hypervolume dominated by `points` and bounded by `reference` (minimisation).

    2 objectives by a sweep, 3 or more by slicing along the last objective (exact; meant for
    fronts of up to a few thousand points).
    """
    points = np.asarray(points, dtype=float)
    reference = np.asarray(reference, dtype=float)
    if points.ndim != 2 or points.shape[1] != reference.shape[0]:
        raise ValueError(f"points must be (n, {reference.shape[0]}), but got shape {points.shape}")
    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return _hv(inside[pareto_front(inside)], reference)


def _hv(points: np.ndarray, reference: np.ndarray) -> float:
    m = points.shape[1]
    if m == 1:
        return float(reference[0] - points[:, 0].min())
    if m == 2:
        order = np.argsort(points[:, 0], kind="stable")
        volume, best_y = 0.0, reference[1]
        for x, y in points[order]:
            if y < best_y:
                volume += (reference[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    order = np.argsort(points[:, -1], kind="stable")
    ordered = points[order]
    volume = 0.0
    for i in range(len(ordered)):
        upper = ordered[i + 1, -1] if i + 1 < len(ordered) else reference[-1]
        thickness = upper - ordered[i, -1]
        if thickness > 0:
            slab = ordered[: i + 1, :-1]
            volume += thickness * _hv(slab[pareto_front(slab)], reference[:-1])
    return float(volume)
