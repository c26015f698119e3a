"""Two drivers on one run directory, through the real CLI: exactly one drives, the other exits 2
naming the holder; reads work while the run goes on; the run ends with exactly its trials."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest
import yaml

pytestmark = pytest.mark.ray

TRIALS = 16
JOB = {
    "name": "one-driver",
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "strategy": {"name": "random"},
    "evaluator": {"name": "synthetic", "delay_s": 0.4},
    "resources": {"trials": TRIALS, "concurrency": 2, "seed": 0},
}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cosearch.cli.main", *args]


def stored(run_dir) -> int:
    if not (run_dir / "cosearch.db").is_file():
        return 0
    db = sqlite3.connect(f"file:{run_dir / 'cosearch.db'}?mode=ro", uri=True)
    try:
        return (
            db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'results'").fetchone()[0]
            and db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        db.close()


def test_two_resumes_at_once_give_one_driver(tmp_path, sessions):
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(JOB))
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        cli("run", str(tmp_path / "job.yaml"), "--run-dir", str(run_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:  # a run killed part way, as a user would find it
        deadline = time.time() + 240
        while stored(run_dir) < 2 and time.time() < deadline and first.poll() is None:
            time.sleep(0.1)
    finally:
        sessions.kill(first.pid)
        first.wait(timeout=30)
    assert 2 <= stored(run_dir) < TRIALS
    drivers = [
        subprocess.Popen(
            cli("resume", str(run_dir)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    try:
        reads = []
        deadline = time.time() + 240
        while any(d.poll() is None for d in drivers) and time.time() < deadline:
            if len(reads) < 2:
                for command in ("status", "pareto"):
                    reads.append(subprocess.run(cli(command, str(run_dir)), capture_output=True, text=True, timeout=60))
            time.sleep(0.2)
        outs = [d.communicate(timeout=60) for d in drivers]
    finally:
        for d in drivers:
            sessions.kill(d.pid)
    codes = sorted(d.returncode for d in drivers)
    assert codes == [0, 2], outs
    refused = next(err for d, (_, err) in zip(drivers, outs) if d.returncode == 2)
    assert "being driven by another cosearch process" in " ".join(refused.split()) and "Traceback" not in refused
    assert all(r.returncode == 0 for r in reads), [r.stderr for r in reads]
    db = sqlite3.connect(run_dir / "cosearch.db")
    ids = [r[0] for r in db.execute("SELECT id FROM results ORDER BY id")]
    db.close()
    assert ids == list(range(1, TRIALS + 1))
