"""SIGKILL the driver's whole process group at random points of a real run, resume, repeat: no stored
result is lost, changed or stored twice, and the run ends with exactly its trials."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.ray

TRIALS = 24
JOB = {
    "name": "kills",
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "strategy": {"name": "regularized_evolution", "population_size": 6, "sample_size": 3},
    "evaluator": {"name": "synthetic", "fail_rate": 0.1, "delay_s": 0.3},
    "budgets": ["latency_ms <= 1.2"],
    "resources": {"trials": TRIALS, "concurrency": 2, "seed": 3},
}


def has_run(run_dir: Path) -> bool:
    from cosearch.controller.store import half_created

    return (run_dir / "cosearch.db").is_file() and not half_created(run_dir)


def launch(job: Path, run_dir: Path) -> subprocess.Popen:
    args = ["resume", str(run_dir)] if has_run(run_dir) else ["run", str(job), "--run-dir", str(run_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "cosearch.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def kill_and_resume(tmp_path: Path, sessions, stored_rows, kills: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(JOB))
    run_dir = tmp_path / "run"
    kept: list[tuple] = []
    done = 0
    for point in range(kills + 20):
        driver = launch(job, run_dir)
        # Half the kills at a random time (start-up, Ray, creating the store), half after a few more results.
        by_time = point < kills and rng.random() < 0.5
        wait_s, more = float(rng.uniform(0.5, 8.0)), int(rng.integers(1, 5))
        start, target = time.time(), len(stored_rows(run_dir)) + more
        try:
            while driver.poll() is None and time.time() - start < 240:
                if point < kills and (
                    (by_time and time.time() - start >= wait_s) or (not by_time and len(stored_rows(run_dir)) >= target)
                ):
                    break
                time.sleep(0.05)
        finally:
            sessions.kill(driver.pid)  # SIGKILL the whole group: driver, Ray's head and its workers
            driver.wait(timeout=30)
        rows = stored_rows(run_dir)
        assert rows[: len(kept)] == kept, f"kill {point}: a stored row was lost or rewritten"
        kept = rows
        if driver.returncode == 0:
            done += 1
            break
        assert driver.returncode == -9 or point < kills, driver.stderr.read()
    assert done == 1, "the run never finished"
    assert [r[0] for r in kept] == list(range(1, TRIALS + 1))  # ids 1..N, contiguous, N == trials
    assert len({r[1] for r in kept}) == TRIALS  # no key twice
    time.sleep(1.0)
    assert sessions.pids(driver.pid) == []


def test_random_kills_lose_and_repeat_nothing(tmp_path, sessions, run_rows):
    kill_and_resume(tmp_path, sessions, run_rows, kills=3, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])  # 20 kill points in all
def test_ten_random_kills_per_run_lose_and_repeat_nothing(tmp_path, sessions, run_rows, seed):
    kill_and_resume(tmp_path, sessions, run_rows, kills=10, seed=seed)
