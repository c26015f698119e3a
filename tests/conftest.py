from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.register_assert_rewrite("cosearch.testing")  # the conformance suites: detailed assertion messages


def run_cosearch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """The `cosearch` command in a subprocess, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cosearch.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session", autouse=True)
def dataset_cache(tmp_path_factory):
    """Decoded image folders go to a temporary cache, not the user's (Ray workers inherit it)."""
    os.environ["COSEARCH_CACHE"] = str(tmp_path_factory.mktemp("cosearch-cache"))
    return os.environ["COSEARCH_CACHE"]


@pytest.fixture(scope="session")
def cosearch_cli():
    return run_cosearch


def session_pids(sid: int) -> list[int]:
    """Every process of session `sid`: a driver started with start_new_session and all it spawned."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


def kill_session(sid: int) -> None:
    """SIGKILL every process of a session, so nothing a test started outlives it."""
    for pid in session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture()
def sessions():
    return SimpleNamespace(pids=session_pids, kill=kill_session)


def stored_rows(run_dir: Path) -> list[tuple]:
    """A run's stored results as (id, key, result) rows, read-only and without the run's lock, as a test
    reads a run while its driver writes (or after it was killed); none before the driver created them."""
    if not (run_dir / "cosearch.db").is_file():
        return []
    db = sqlite3.connect(f"file:{run_dir / 'cosearch.db'}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return db.execute("SELECT id, key, result FROM results ORDER BY id").fetchall() if "results" in tables else []
    finally:
        db.close()


@pytest.fixture(scope="session")
def run_rows():
    return stored_rows


class StopAfter:
    """A run listener that stops the run like Ctrl-C once `n` results are stored."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, state) -> None:
        if state.evaluated >= self.n:
            raise KeyboardInterrupt


@pytest.fixture(scope="session")
def stop_after():
    return StopAfter


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the in-process tests; the controller reuses it and leaves it running."""
    ray = pytest.importorskip("ray")
    # "device:test-board" stands for a node that has a device (tests of latency routing).
    ray.init(
        num_cpus=2,
        resources={"device:test-board": 1},
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    yield ray
    ray.shutdown()
