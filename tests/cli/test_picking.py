"""`cosearch pareto --format` and `cosearch export --best --where` on a stored run (nothing trained)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from cosearch.cli.main import main
from cosearch.controller import RunStore
from cosearch.report import best, select
from cosearch.testing.runs import make_run


@pytest.fixture
def run(tmp_path):
    make_run(tmp_path / "run")
    return tmp_path / "run"


def stored(run):
    with RunStore(run) as store:
        return {r.id: r.result for r in store.results()}


def test_pareto_formats_list_the_same_front(run, capsys):
    assert main(["pareto", str(run), "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    front = select(run).front
    assert [r["id"] for r in records] == front and all(r["pareto"] and r["feasible"] for r in records)
    results = stored(run)
    assert records[0]["candidate"] == results[front[0]].candidate.to_json()
    assert records[0]["key"] == results[front[0]].candidate.key
    assert main(["pareto", str(run), "--format", "csv"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [int(r["id"]) for r in table] == front
    assert float(table[0]["accuracy"]) == results[front[0]].metrics["accuracy"]  # full precision
    assert main(["pareto", str(run), "--format", "csv", "--all"]) == 0
    every = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(every) == 30 and {r["status"] for r in every} == {"ok", "infeasible", "failed"}
    assert sum(r["pareto"] == "1" for r in every) == len(front)


def test_unknown_format_is_a_usage_error(run, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["pareto", str(run), "--format", "yaml"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_best_is_the_best_result_meeting_every_rule_and_the_job_budgets(run):
    results = stored(run)
    rules = ["latency_ms@rpi4 <= 3", "size_kb <= 40"]
    row, why = best(run, "accuracy", rules)
    meeting = [
        (r.metrics["accuracy"], -i)
        for i, r in results.items()
        if r.ok
        and r.metrics["latency_ms@rpi4"] <= 3
        and r.metrics["size_kb"] <= 40
        and r.metrics["latency_ms@local-cpu"] <= 1.0  # the job's budget on another metric stays
    ]
    assert row.id == -max(meeting)[1]
    assert why.startswith(f"picked #{row.id}: the highest accuracy") and f"the {len(meeting)} of 24" in why
    assert "latency_ms@rpi4 <= 3" in why and "size_kb <= 40" in why and "size_kb <= 45" not in why  # replaced
    lowest, why = best(run, "latency_ms@rpi4")
    feasible = [
        r.metrics["latency_ms@rpi4"]
        for r in results.values()
        if r.ok and r.metrics["size_kb"] <= 45 and r.metrics["latency_ms@local-cpu"] <= 1.0
    ]
    assert lowest.metrics["latency_ms@rpi4"] == min(feasible) and "the lowest latency_ms@rpi4" in why


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--best", "accuracy", "--where", "latency_ms@rpi9 <= 1"], "a budget on a metric this run has"),
        (["--best", "accuracy", "--where", "size_kb < 1"], "--where[0]"),
        (["--best", "accuracy", "--where", "size_kb <= 1"], "no result meets"),
        (["--best", "accurcy"], "--best"),
        (["--best", "energy_mj@rpi4"], "a metric this run's results have"),
        (["--pick", "3", "--where", "size_kb <= 10"], "--where chooses among results for --best"),
    ],
)
def test_bad_picking_rules_exit_2_and_write_nothing(run, tmp_path, capsys, args, message):
    out = tmp_path / "exported"
    assert main(["export", str(run), *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()


def test_no_result_meeting_the_rules_says_how_many_meet_each(run, capsys):
    assert main(["export", str(run), "--best", "accuracy", "--where", "size_kb <= 1"]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "size_kb <= 1: 0" in err and "of 24 trained results" in err


def test_resume_with_fewer_trials_than_stored_exits_2_and_changes_nothing(run, capsys):
    with RunStore(run) as store:
        job_before = store.job()
    assert main(["resume", str(run), "--trials", "20"]) == 2
    assert "--trials 20 is below the 30 results" in capsys.readouterr().err
    with RunStore(run) as store:
        assert store.job() == job_before and store.count() == 30
