"""Run directories in unusual states, through the CLI: each gives one clear message naming the path and
what to do, exit 2 and no traceback, and changes nothing; a stale checkpoint is recoverable."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from cosearch.cli.main import main
from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray

JOB = {
    "name": "damaged",
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "strategy": {"name": "regularized_evolution", "population_size": 4, "sample_size": 2},
    "evaluator": {"name": "synthetic", "fail_rate": 0.2},
    "budgets": ["latency_ms <= 1.2"],
    "resources": {"trials": 8, "concurrency": 2, "seed": 0},
}
READS = (["status"], ["pareto"], ["resume"])


@pytest.fixture(scope="module")
def stopped(ray_local, tmp_path_factory, stop_after):
    """A run stopped part way (4 or 5 of 8 stored); each test damages its own copy."""
    run_dir = tmp_path_factory.mktemp("damaged") / "run"
    with pytest.raises(KeyboardInterrupt):
        Controller.start(spec_from_dict(JOB), run_dir, listener=stop_after(4)).run()
    return run_dir


def copy_of(stopped: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(stopped, run_dir, ignore=shutil.ignore_patterns("driver.lock"))
    return run_dir


def sql(run_dir: Path, statement: str) -> None:
    db = sqlite3.connect(run_dir / "cosearch.db")
    with db:
        db.execute(statement)
    db.close()


def digest(run_dir: Path) -> dict[str, str]:
    """Every file's content, less SQLite's own side files of a read (the -shm index, an empty -wal)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run_dir.iterdir())
        if p.name not in ("driver.lock", "cosearch.db-shm")
        and not (p.name == "cosearch.db-wal" and p.stat().st_size == 0)
    }


def rows(run_dir: Path) -> list[tuple]:
    db = sqlite3.connect(run_dir / "cosearch.db")
    try:
        return db.execute("SELECT id, key, result FROM results ORDER BY id").fetchall()
    finally:
        db.close()


def refused(capsys, args: list[str], fragments: list[str]) -> None:
    assert main(args) == 2, args
    err = " ".join(capsys.readouterr().err.split())  # the console wraps long lines
    assert "Traceback" not in err and err.count("error:") == 1, err
    for fragment in fragments:
        assert fragment in err, f"{args}: {fragment!r} missing from: {err}"


DAMAGE = [
    # (description, SQL, fragments every read and resume print)
    (
        "result row not JSON",
        "UPDATE results SET result = '{not json' WHERE id = 2",
        ["result #2", "not valid JSON", "changed outside cosearch"],
    ),
    (
        "result row of another shape",
        "UPDATE results SET result = '[1, 2]' WHERE id = 3",
        ["result #3", "not a stored result"],
    ),
    ("job row not JSON", "UPDATE meta SET value = '{' WHERE name = 'job'", ["job", "not valid JSON"]),
    (
        "results table dropped",
        "DROP TABLE results",
        ["cosearch.db", "lacks its results table", "restore it from a copy"],
    ),
]


@pytest.mark.parametrize("description, statement, fragments", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_database_is_named_and_left_alone(stopped, tmp_path, capsys, description, statement, fragments):
    run_dir = copy_of(stopped, tmp_path)
    sql(run_dir, statement)
    before = digest(run_dir)
    for command in READS:
        refused(capsys, [*command, str(run_dir)], fragments)
    refused(capsys, ["report", str(run_dir), "--out", str(tmp_path / "r.html")], fragments)
    assert digest(run_dir) == before and not (tmp_path / "r.html").exists()


def test_a_file_that_is_not_a_database(tmp_path, capsys):
    (tmp_path / "cosearch.db").write_bytes(b"this is not SQLite" * 100)
    for command in READS:
        refused(capsys, [*command, str(tmp_path)], ["cosearch.db", "not a readable cosearch database"])
    assert (tmp_path / "cosearch.db").read_bytes() == b"this is not SQLite" * 100


@pytest.mark.parametrize(
    "checkpoint",
    [
        "[1, 2]",
        '{"strategy": {"population": "none"}, "told_id": 2, "pending": []}',
        '{"strategy": {}, "told_id": 2, "pending": [{"x": 1}]}',
    ],
    ids=["wrong-shape", "wrong-strategy-state", "wrong-pending"],
)
def test_a_checkpoint_that_cannot_be_loaded_points_at_reset_strategy(stopped, tmp_path, capsys, checkpoint):
    run_dir = copy_of(stopped, tmp_path)
    sql(run_dir, f"UPDATE meta SET value = '{checkpoint}' WHERE name = 'checkpoint'")
    before, stored = digest(run_dir), rows(run_dir)
    refused(
        capsys,
        ["resume", str(run_dir)],
        ["checkpoint", f"cosearch resume {run_dir} --reset-strategy", "nothing stored is lost"],
    )
    assert digest(run_dir) == before
    assert main(["status", str(run_dir)]) == 0  # reads do not need the checkpoint
    assert main(["resume", str(run_dir), "--reset-strategy"]) == 0
    after = rows(run_dir)
    assert (
        after[: len(stored)] == stored
        and [r[0] for r in after] == list(range(1, 9))
        and len({r[1] for r in after}) == 8
    )


def test_a_run_that_never_started_is_named_and_replaceable(tmp_path, capsys, monkeypatch):
    """A start that died before its job was stored (the disk filled) leaves an empty database."""
    monkeypatch.chdir(tmp_path)
    Path("job.yaml").write_text(yaml.safe_dump(dict(JOB, resources={"trials": 3, "concurrency": 1, "seed": 0})))
    for content in (b"", None):
        shutil.rmtree("run", ignore_errors=True)
        Path("run").mkdir()
        if content is None:
            sqlite3.connect("run/cosearch.db").execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        else:
            Path("run/cosearch.db").write_bytes(content)
        for command in READS:
            refused(
                capsys, [*command, "run"], ["a run that never started", "cosearch run JOB --run-dir run", "replaces it"]
            )
        assert main(["run", "job.yaml", "--run-dir", "run"]) == 0
        with RunStore("run") as store:
            assert store.count() == 3 and store.status()["state"] == "finished"


def test_a_killed_driver_is_reported_as_stopped(stopped, tmp_path, capsys):
    run_dir = copy_of(stopped, tmp_path)
    sql(run_dir, 'UPDATE meta SET value = \'{"state": "running", "reason": ""}\' WHERE name = \'status\'')
    assert main(["status", str(run_dir)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "stopped (driver not running)" in out and f"cosearch resume {run_dir}" in out
