"""A Ray worker killed mid-evaluation: the task is retried, and after its retries it is a failed result;
the search goes on to its trials."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray


def evaluating_workers() -> list[int]:
    """Ray names a worker process after the task it runs."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::_evaluate"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_a_killed_worker_is_retried_then_a_failed_result(ray_local, tmp_path):
    job = spec_from_dict(
        {
            "name": "worker-death",
            "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
            "strategy": {"name": "random"},
            "evaluator": {"name": "synthetic", "delay_s": 3.0},  # long enough to be killed mid-way under load
            "resources": {"trials": 3, "concurrency": 1, "seed": 0},
        }
    )
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:  # kill the first 4 attempts: all 3 of the first candidate, 1 of the second
        while not stop.is_set() and len(killed) < 4:
            for pid in evaluating_workers():
                if pid not in killed:
                    time.sleep(0.3)  # mid-evaluation
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        state = Controller.start(job, tmp_path / "run").run()
    finally:
        stop.set()
        thread.join(timeout=10)
    assert len(killed) == 4 and state.finished
    with RunStore(tmp_path / "run") as store:
        results = [r.result for r in store.results()]
    assert [r.status for r in results] == ["failed", "ok", "ok"]
    assert "Worker" in results[0].error  # Ray's WorkerCrashedError, after max_retries
