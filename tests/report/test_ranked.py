"""Picking a weight-sharing search's finals by Pareto rank."""

from __future__ import annotations

import numpy as np

from cosearch.controller.store import StoredResult
from cosearch.core import Constraint, Goals, Objective
from cosearch.core.result import Result
from cosearch.report import pareto_ids, ranked_ids
from cosearch.search_spaces import SEARCH_SPACES, JointSpace

GOALS = Goals((Objective.parse("accuracy"), Objective.parse("latency_ms")), (Constraint.parse("latency_ms <= 5"),))


def stored(points: list[tuple[float, float]]) -> list[StoredResult]:
    joint = JointSpace(SEARCH_SPACES.create("nb201"))
    rng = np.random.default_rng(0)
    return [
        StoredResult(
            i, Result(joint.decode(joint.sample(rng)), "ok", {"accuracy": a, "latency_ms@local-cpu": lat}), 0.0
        )
        for i, (a, lat) in enumerate(points, start=1)
    ]


def test_the_front_first_then_the_next_front_each_by_the_first_objective_and_never_over_budget():
    results = stored([(0.9, 1.0), (0.8, 2.0), (0.95, 2.0), (0.85, 3.0), (0.99, 9.0), (0.7, 4.0)])
    # front: 3 (0.95, 2) and 1 (0.9, 1); next: 2 (0.8, 2) and 4 (0.85, 3); then 6; 5 is over the budget
    assert pareto_ids(results, GOALS) == [3, 1]
    assert ranked_ids(results, GOALS, 3) == [3, 1, 4]
    assert ranked_ids(results, GOALS, 10) == [3, 1, 4, 2, 6]
    assert ranked_ids(results, GOALS, 1) == [3] and ranked_ids([], GOALS, 4) == []
