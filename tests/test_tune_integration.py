"""cosearch strategies as a Ray Tune Searcher: a real Tuner run, save / restore, and bad input."""

from __future__ import annotations

import pytest

pytest.importorskip("ray.tune")

from cosearch.core.errors import SpecError
from cosearch.core.result import Result
from cosearch.integrations.tune import CosearchSearcher, candidate_of

SPACE = {"name": "nb201", "channels": 4, "cells_per_stage": 1}
GOALS = {"objectives": ["accuracy", "size_kb"], "budgets": ["size_kb <= 4"]}


def synthetic_metrics(config: dict) -> dict:
    from cosearch.evaluators.synthetic import SyntheticEvaluator
    from cosearch.search_spaces import SEARCH_SPACES

    space = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)
    metrics = SyntheticEvaluator(space).evaluate(candidate_of(config)).result.metrics
    return {"accuracy": metrics["accuracy"], "size_kb": metrics["size_kb"]}


def searcher(**kwargs) -> CosearchSearcher:
    return CosearchSearcher(space=SPACE, **{"compression": {"weight_bits": [4, 8, 32]}, **GOALS, **kwargs})


@pytest.mark.ray
def test_a_tuner_runs_a_cosearch_strategy_to_its_pareto_set(tmp_path, ray_local):
    import sys

    from ray import cloudpickle, tune

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the trainable lives in this test file
    search = searcher(strategy="nsga2", strategy_params={"population_size": 4})
    tuner = tune.Tuner(
        synthetic_metrics,
        tune_config=tune.TuneConfig(search_alg=search, num_samples=10, max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    grid = tuner.fit()
    assert len(grid) == 10 and not grid.errors
    assert len(search.completed) == 10 and all(r.ok for r in search.completed)
    keys = [r.candidate.key for r in search.completed]
    assert len(set(keys)) == 10  # repeats were filtered, as in `cosearch run`
    front = search.pareto()
    assert front and all(r.metrics["size_kb"] <= 4 for r in front)
    best = max((r for r in search.completed if r.metrics["size_kb"] <= 4), key=lambda r: r.metrics["accuracy"])
    assert best in front


def test_save_and_restore_continue_as_the_original_would(tmp_path):
    original = searcher(strategy="regularized_evolution", strategy_params={"population_size": 4, "sample_size": 2})
    for i in range(6):
        config = original.suggest(f"t{i}")
        original.on_trial_complete(f"t{i}", synthetic_metrics(config))
    pending = original.suggest("t6")  # in flight when saved
    original.save(str(tmp_path / "searcher.pkl"))
    restored = searcher(strategy="regularized_evolution", strategy_params={"population_size": 4, "sample_size": 2})
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.running_keys() == {candidate_of(pending).key} and len(restored.completed) == 6
    for searcher_ in (original, restored):
        searcher_.on_trial_complete("t6", synthetic_metrics(pending))
    assert [original.suggest(f"n{i}") for i in range(4)] == [restored.suggest(f"n{i}") for i in range(4)]


def test_a_trial_without_the_metrics_or_with_an_error_is_a_failed_result():
    search = searcher()
    search.suggest("a")
    search.on_trial_complete("a", {"accuracy": 0.9})  # no size_kb
    search.suggest("b")
    search.on_trial_complete("b", None, error=True)
    assert [r.status for r in search.completed] == ["failed", "failed"]
    assert "size_kb" in search.completed[0].error and isinstance(search.completed[1], Result)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"strategy": "no_such"}, "strategy"),
        ({"objectives": ["speed"]}, "objectives"),
        ({"budgets": ["size_kb < 3"]}, "budgets"),
        ({"strategy": "darts"}, "strategy"),
        ({"compression": {"weight_bits": [9]}}, "compression.weight_bits"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(SpecError) as error:
        searcher(**kwargs)
    assert error.value.field.startswith(field)
