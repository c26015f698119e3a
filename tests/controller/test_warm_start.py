"""cosearch run --warm-start: an earlier run's results told first, reused where evaluated the same way."""

from __future__ import annotations

import pytest

from cosearch.cli.main import main
from cosearch.controller import Controller, RunStore
from cosearch.core import CosearchError
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray

BASE = {
    "name": "w",
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "compression": {"weight_bits": [8, 32], "sparsity": [0.0, 0.5], "channel_ratio": [0.0, 0.5]},
    "strategy": {"name": "random"},
    "evaluator": {"name": "synthetic", "fail_rate": 0.0},
    "objectives": ["accuracy", "latency_ms", "size_kb"],
    "resources": {"trials": 6, "concurrency": 2, "seed": 0},
}


def job(**changes):
    return spec_from_dict({**BASE, **changes})


def stored(run_dir):
    with RunStore(run_dir) as store:
        return store.results(), store.warm_start()


@pytest.fixture
def source(ray_local, tmp_path):
    Controller.start(job(), tmp_path / "source").run()
    return tmp_path / "source"


def test_same_evaluation_settings_reuse_results_and_evaluate_only_new_candidates(source, tmp_path):
    # New budgets, strategy and trials: what is measured is the same, so nothing is measured twice.
    new = job(
        strategy={"name": "regularized_evolution", "population_size": 4, "sample_size": 2},
        budgets=["size_kb <= 500"],
        resources={"trials": 10, "concurrency": 2, "seed": 0},
    )
    controller = Controller.start(new, tmp_path / "new", warm_start=source)
    assert controller.state.evaluated == 6 and controller.told_id == 6
    controller.run()
    results, info = stored(tmp_path / "new")
    old, _ = stored(source)
    assert info == {"from": str(source), "reused": 6, "told": 0, "left_out": 0}
    assert len(results) == 10 and len({r.result.candidate.key for r in results}) == 10
    for copy, original in zip(results[:6], old):
        assert copy.result.candidate == original.result.candidate and copy.result.metrics == original.result.metrics
        assert copy.result.measured["warm_start"] == {"from": str(source), "id": original.id}
    assert all("warm_start" not in r.result.measured for r in results[6:])


def test_other_evaluation_settings_tell_the_strategy_but_evaluate_anew(source, tmp_path):
    new = job(
        evaluator={"name": "synthetic", "fail_rate": 0.0, "delay_s": 0.01},
        strategy={"name": "regularized_evolution", "population_size": 4, "sample_size": 2},
    )
    controller = Controller.start(new, tmp_path / "new", warm_start=source)
    assert controller.state.evaluated == 0
    assert len(controller.strategy.state_dict()["population"]) == 4  # told (the last 4 kept) before its first ask
    controller.run()
    results, info = stored(tmp_path / "new")
    assert info == {"from": str(source), "reused": 0, "told": 6, "left_out": 0}
    assert len(results) == 6 and all("warm_start" not in r.result.measured for r in results)


def test_results_outside_the_new_space_are_left_out(source, tmp_path):
    narrower = {"weight_bits": [8, 32], "sparsity": [0.0, 0.5], "channel_ratio": [0.0]}
    controller = Controller.start(job(compression=narrower), tmp_path / "new", warm_start=source)
    reused = controller.warm.summary()["reused"]
    kept = [r for r in stored(source)[0] if r.result.candidate.policy.network["channel_ratio"] == 0.0]
    assert 0 < len(kept) < 6  # the seeded source has both
    assert reused == len(kept) and controller.warm.left_out == 6 - len(kept)
    controller.lock.release()


def test_a_warm_start_from_another_space_exits_2_and_writes_nothing(source, tmp_path, capsys):
    import yaml

    other = dict(BASE, search_space={"name": "nb201", "channels": 4, "cells_per_stage": 1})
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    new_dir = tmp_path / "new"
    assert main(["run", str(tmp_path / "other.yaml"), "--run-dir", str(new_dir), "--warm-start", str(source)]) == 2
    assert "searched nb201 {'channels': 8" in capsys.readouterr().err
    assert not new_dir.exists()
    with pytest.raises(CosearchError, match="not a cosearch run directory"):
        Controller.start(job(), tmp_path / "new2", warm_start=tmp_path)
    assert not (tmp_path / "new2").exists()
