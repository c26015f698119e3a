from __future__ import annotations

import sqlite3

import pytest

from cosearch.controller.store import Checkpoint, RunStore
from cosearch.core import Candidate, Result, RunDirError


def result(i: int, status: str = "ok") -> Result:
    candidate = Candidate({"cell": f"arch-{i}"})
    return Result(
        candidate, status, {"accuracy": i / 10} if status == "ok" else {}, error=None if status == "ok" else "boom"
    )


def test_results_are_durable_and_ordered(tmp_path):
    with RunStore(tmp_path / "run", create=True) as store:
        store.save_job({"name": "t"})
        ids = [store.add(result(i), weights=b"w%d" % i) for i in range(3)]
        store.add(result(9, "failed"))
        store.save_checkpoint(Checkpoint({"rng": 1}, told_id=4, pending=[result(5).candidate.to_json()]))
    with RunStore(tmp_path / "run") as store:  # reopened: everything is still there
        assert ids == [1, 2, 3] and store.count() == 4
        assert [r.id for r in store.results(after_id=2)] == [3, 4]
        assert store.results()[3].result.status == "failed"
        assert store.weights(result(1).candidate.key) == b"w1"
        assert store.by_key(result(2).candidate.key).id == 3
        checkpoint = store.checkpoint()
        assert checkpoint.told_id == 4 and checkpoint.pending[0]["arch"] == {"cell": "arch-5"}
        assert (tmp_path / "run" / "job.yaml").is_file()


def test_a_candidate_is_stored_once(tmp_path):
    with RunStore(tmp_path, create=True) as store:
        store.save_job({})
        store.add(result(1))
        with pytest.raises(sqlite3.IntegrityError):
            store.add(result(1))
        assert store.count() == 1


def test_not_a_run_dir(tmp_path):
    with pytest.raises(RunDirError, match="not a cosearch run directory"):
        RunStore(tmp_path)
    (tmp_path / "cosearch.db").write_text("not sqlite at all, just text " * 20)
    with pytest.raises(RunDirError):
        RunStore(tmp_path)
