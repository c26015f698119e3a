"""The Python API: cosearch.search, cosearch.open_run and what a Run gives a notebook."""

from __future__ import annotations

import json

import pytest

import cosearch
from cosearch.core import CosearchError
from cosearch.report import select
from cosearch.testing.runs import make_run


@pytest.fixture
def stored_run(tmp_path):
    make_run(tmp_path / "run")
    return tmp_path / "run"


def test_open_run_reads_results_front_and_picks(stored_run):
    run = cosearch.open_run(stored_run)
    status = run.status()
    assert status["state"] == "finished" and status["evaluated"] == 30 and status["trials"] == 40
    assert (status["ok"], status["infeasible"], status["failed"]) == (24, 4, 2)
    results = run.results()
    assert [r.id for r in results] == list(range(1, 31))
    front = run.pareto()
    assert [r.id for r in front] == select(stored_run).front and all(r.pareto and r.feasible for r in front)
    assert {r.id for r in results if r.pareto} == {r.id for r in front}
    rpi4 = run.pareto(device="rpi4", budgets=["latency_ms@rpi4 <= 4"])
    assert all(r.metrics["latency_ms@rpi4"] <= 4 for r in rpi4)
    json.dumps([r.to_dict() for r in results])  # plain values, no pandas
    pick = run.best("accuracy", where=["size_kb <= 30"])
    assert pick.metrics["size_kb"] <= 30 and pick.id in {r.id for r in results if r.status == "ok"}
    assert run.report().is_file()


def test_open_run_of_a_folder_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(CosearchError, match="holds no cosearch run"):
        cosearch.open_run(tmp_path)


@pytest.mark.ray
def test_search_from_python_runs_to_the_end(tmp_path, ray_local):
    job = {
        "name": "api",
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "compression": {"weight_bits": [8, 32]},
        "evaluator": {"name": "synthetic"},
        "objectives": ["accuracy", "size_kb"],
        "resources": {"trials": 6, "concurrency": 2},
    }
    run = cosearch.search(job, run_dir=tmp_path / "run", progress=False)
    assert run.status()["state"] == "finished" and len(run.results()) == 6
    assert run.pareto()
    assert len(cosearch.resume(tmp_path / "run", progress=False, trials=8).results()) == 8
    with pytest.raises(CosearchError, match="already holds a run"):
        cosearch.search(job, run_dir=tmp_path / "run", progress=False)
    with pytest.raises(CosearchError, match="a job file, a mapping or a JobSpec"):
        cosearch.search(42, run_dir=tmp_path / "other")
