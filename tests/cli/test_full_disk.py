"""A disk that fills during a run: a clear error naming the database and how to go on, nothing
stored is corrupted, and the run resumes to exactly its trials once there is space."""

from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.ray

TRIALS = 400
JOB = {
    "name": "full-disk",
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 5},
    "strategy": {"name": "random"},
    "evaluator": {"name": "synthetic"},
    "resources": {"trials": TRIALS, "concurrency": 2, "seed": 0},
}


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    return (
        subprocess.run(
            ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True
        ).returncode
        == 0
    )


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs `unshare -m` and mount (root) for a small tmpfs")
def test_a_full_disk_stops_clearly_and_the_run_resumes_once_there_is_space(tmp_path):
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(JOB))
    cli, d, o = f"{shlex.quote(sys.executable)} -m cosearch.cli.main", shlex.quote(str(disk)), shlex.quote(str(out))
    script = f"""
mount -t tmpfs -o size=160k tmpfs {d} || exit 99
{cli} run {shlex.quote(str(tmp_path / "job.yaml"))} --run-dir {d}/run > {o}/first.out 2> {o}/first.err; echo $? > {o}/first.rc
cp -a {d}/run {o}/after-full
mount -o remount,size=20m {d}
{cli} resume {d}/run > {o}/second.out 2> {o}/second.err; echo $? > {o}/second.rc
cp -a {d}/run {o}/final
"""
    subprocess.run(["unshare", "-m", "sh", "-c", script], timeout=500, check=True)
    first_err = " ".join((out / "first.err").read_text().split())
    assert (out / "first.rc").read_text().strip() == "2", first_err
    assert "Traceback" not in first_err and "cosearch.db" in first_err and "resume" in first_err, first_err
    assert first_err.count("cannot write") == 1, first_err  # said once, not by every cleanup write too
    assert (out / "second.rc").read_text().strip() == "0", (out / "second.err").read_text()

    def rows(run_dir):
        db = sqlite3.connect(run_dir / "cosearch.db")
        try:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            return db.execute("SELECT id, key, result FROM results ORDER BY id").fetchall()
        finally:
            db.close()

    before, after = rows(out / "after-full"), rows(out / "final")
    assert 0 < len(before) < TRIALS, "the disk never filled"
    assert after[: len(before)] == before
    assert [r[0] for r in after] == list(range(1, TRIALS + 1)) and len({r[1] for r in after}) == TRIALS
