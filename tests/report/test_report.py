from __future__ import annotations

import pytest

from cosearch.cli.main import main
from cosearch.controller import RunStore
from cosearch.core import Candidate, Result
from cosearch.job import spec_from_dict

pytest.importorskip("matplotlib")


def make_run(path):
    job = spec_from_dict(
        {
            "name": "rep",
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "evaluator": {"name": "synthetic"},
            "budgets": ["latency_ms <= 1.0"],
            "resources": {"trials": 5},
        }
    )
    with RunStore(path, create=True) as store:
        store.save_job(job.to_json())
        for i, (acc, lat, size) in enumerate(
            [(0.9, 0.5, 10.0), (0.95, 0.8, 20.0), (0.97, 1.5, 30.0), (0.8, 0.9, 40.0)]
        ):
            metrics = {"accuracy": acc, "latency_ms@local-cpu": lat, "size_kb": size}
            store.add(Result(Candidate({"cell": f"arch-{i}"}), "ok", metrics))
        store.add(
            Result(
                Candidate({"cell": "arch-skipped"}),
                "infeasible",
                {"latency_ms@local-cpu": 3.0, "size_kb": 50.0},
                "over budget",
            )
        )
        store.add(Result.failed(Candidate({"cell": "arch-broken"}), "EvaluationError: loss became nan"))


def test_report_is_one_self_contained_page(tmp_path, capsys):
    make_run(tmp_path / "run")
    assert main(["report", str(tmp_path / "run")]) == 0
    page = (tmp_path / "run" / "report.html").read_text()
    assert page.count("<svg") == 4  # accuracy vs latency, vs size, latency vs size, progress
    assert "http" not in page.split("<svg", 1)[0]  # nothing fetched by the page itself
    assert "Pareto set (2)" in page  # arch-2 breaks the latency budget; arch-3 is dominated by arch-1
    assert "loss became nan" in page
    assert "1 over budget before training, 1 failed" in page
    assert "wrote" in capsys.readouterr().out
