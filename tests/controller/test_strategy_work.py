"""A strategy's work (the darts searches) through the controller: run in Ray tasks, stored before
the strategy hears of it, handed back from the store on resume instead of run again."""

from __future__ import annotations

import pytest

from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray

JOB = {
    "name": "darts",
    "task": {"dataset": "digits"},
    "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    "compression": {"weight_bits": [8, 32], "sparsity": [0.0, 0.5]},
    "strategy": {"name": "darts", "epochs": 1, "targets": [0.5, 1.0]},
    "objectives": ["accuracy", "size_kb"],
    "budgets": ["size_kb <= 30"],  # a cost known exactly: the test does not time anything
    "training": {"epochs": 1, "finetune_epochs": 0},
    "latency": {"warmup_runs": 2, "runs": 30},
    "resources": {"trials": 3, "concurrency": 2, "seed": 0},
}


def test_darts_searches_run_once_and_their_cells_are_evaluated_first(ray_local, tmp_path):
    job = spec_from_dict(
        {**JOB, "strategy": {**JOB["strategy"], "targets": [0.5, 1.0]}, "budgets": ["latency_ms <= 5"]}
    )
    run_dir = tmp_path / "run"
    Controller.start(job, run_dir).run()
    with RunStore(run_dir) as store:
        outputs = [store.work("darts:0.5"), store.work("darts:1")]
        table = store.work("darts:costs")
        results = store.results()
    assert all(o is not None and o["metric"] == "latency_ms@local-cpu" for o in outputs)
    assert table["metric"] == "latency_ms@local-cpu"  # priced once, and both searches read it
    assert all(o["cost_table"]["effect"] == table["effect"] for o in outputs)
    assert [o["target"] for o in outputs] == [2.5, 5.0]
    derived = {o["cell"] for o in outputs}
    assert {r.result.candidate.arch["cell"] for r in results[: len(derived)]} == derived
    assert len(results) == 3

    # A reset strategy is handed the stored searches back: nothing is searched twice.
    controller = Controller.resume(run_dir, reset_strategy=True, trials=4)
    controller.run()
    with RunStore(run_dir) as store:
        assert [store.work("darts:0.5"), store.work("darts:1")] == outputs  # same outputs, seconds and all
        assert store.work("darts:costs") == table
        assert store.count() == 4
    assert set(controller.strategy.searches) == {"darts:0.5", "darts:1"}


def test_enas_trains_its_controller_on_shared_weights_once_then_asks_what_it_rewarded_most(ray_local, tmp_path):
    from cosearch.search_spaces import SEARCH_SPACES, JointSpace
    from cosearch.strategies.enas import KEY

    body = {
        **JOB,
        "search_space": {"name": "enas", "channels": 4, "layers": 4},
        "strategy": {"name": "enas", "epochs": 1, "samples": 3, "top_k": 2},
        "budgets": ["size_kb <= 100"],
        "resources": {"trials": 3, "concurrency": 2, "seed": 0},
    }
    run_dir = tmp_path / "run"
    Controller.start(spec_from_dict(body), run_dir).run()
    with RunStore(run_dir) as store:
        output = store.work(KEY)
        results = store.results()
    joint = JointSpace(SEARCH_SPACES.create("enas", channels=4, layers=4), weight_bits=[8, 32], sparsity=[0.0, 0.5])
    best = [joint.decode(g).key for g in output["best"]]
    assert {r.result.candidate.key for r in results[:2]} == set(best) and len(results) == 3  # stored as they finish
