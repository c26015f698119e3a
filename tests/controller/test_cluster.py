"""`--address`: the same job on a Ray cluster started apart from the driver (here, on this machine)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from cosearch.controller import RunStore
from cosearch.core.errors import RunDirError

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def head_node(sessions, dashboard_port: int | None = None):
    """A head node in its own process session, so stopping it touches no other Ray (never
    `ray stop`); with `dashboard_port`, its dashboard and job server too (ray[default])."""
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("the ray command line is not installed")
    port = free_port()
    # A short temp dir: Ray's unix socket paths must fit in 107 characters.
    ray_tmp = tempfile.mkdtemp(prefix="cosearch-ray-")
    # Token authentication on, as Ray's docs ask of a cluster; the driver then reads the same token.
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token"}
    # Agent ports of its own: another Ray on this machine (the tests' local one) holds the defaults,
    # and a job server whose agent cannot bind answers "No available agent" forever.
    ports = [
        f"--{name}-port={free_port()}" for name in ("dashboard-agent-listen", "dashboard-agent-grpc", "metrics-export")
    ]
    dashboard = (
        ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}", *ports]
        if dashboard_port
        else ["--include-dashboard=false"]
    )
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            *dashboard,
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 120
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", dashboard_port or port)) == 0:
                    break
            if time.time() > deadline or head.poll() is not None:
                pytest.fail("the Ray head did not start")
            time.sleep(0.5)
        yield SimpleNamespace(
            address=f"127.0.0.1:{port}", env=env, ray=ray_cli, jobs=f"http://127.0.0.1:{dashboard_port}"
        )
    finally:
        sessions.kill(head.pid)
        head.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.fixture()
def cluster(sessions):
    with head_node(sessions) as head:
        yield head.address, head.env


JOB = {
    "name": "cluster",
    "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    "evaluator": {"name": "synthetic"},
    "strategy": {"name": "random"},
    "resources": {"trials": 6, "concurrency": 2},
}


def stored(run_dir) -> int:
    try:
        with RunStore(run_dir) as store:
            return store.count()
    except RunDirError:  # not there yet, or its job not yet written
        return 0


def submit(head, work, *args: str) -> subprocess.CompletedProcess:
    """`ray job submit`, retried while the job server answers but its agent cannot take a job yet."""
    deadline = time.time() + 300  # the agent can take minutes to register on a loaded 2-core machine
    while True:
        command = [head.ray, "job", "submit", "--address", head.jobs, "--working-dir", str(work), *args]
        out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=head.env)
        if "No available agent" not in out.stderr or time.time() > deadline:
            return out
        time.sleep(2)


def test_ray_job_submit_runs_stops_and_resumes_the_search(sessions, tmp_path):
    """`ray job submit --working-dir . -- cosearch run job.yaml`: the entrypoint runs on the head
    with RAY_ADDRESS set, and cosearch joins that cluster instead of starting its own Ray; a job
    stopped with `ray job stop` is a stopped run that `cosearch resume` finishes."""
    pytest.importorskip("aiohttp", reason="Ray's job server needs ray[default] (cosearch's `cluster` extra)")
    work = tmp_path / "work"
    work.mkdir()
    (work / "job.yaml").write_text(yaml.safe_dump(JOB))
    slow = {**JOB, "evaluator": {"name": "synthetic", "delay_s": 0.5}, "resources": {"trials": 40, "concurrency": 2}}
    (work / "slow.yaml").write_text(yaml.safe_dump(slow))
    cli = [sys.executable, "-m", "cosearch.cli.main"]
    with head_node(sessions, dashboard_port=free_port()) as head:
        # absolute run directories: the working dir is a copy that Ray deletes afterwards
        out = submit(head, work, "--", *cli, "run", "job.yaml", "--run-dir", str(tmp_path / "run"))
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        assert "[6/6]" in out.stdout  # Ray's job logs are the search's progress display
        with RunStore(tmp_path / "run") as store:
            assert store.count() == 6 and store.status()["state"] == "finished"

        stopped = tmp_path / "stopped"
        out = submit(
            head,
            work,
            "--no-wait",
            "--submission-id",
            "slow",
            "--",
            *cli,
            "run",
            "slow.yaml",
            "--run-dir",
            str(stopped),
        )
        assert out.returncode == 0, out.stderr[-3000:]
        deadline = time.time() + 120
        while stored(stopped) < 3:
            assert time.time() < deadline, "the submitted search stored nothing"
            time.sleep(0.5)
        out = subprocess.run(
            [head.ray, "job", "stop", "--address", head.jobs, "slow"],
            capture_output=True,
            text=True,
            timeout=120,
            env=head.env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        with RunStore(stopped) as store:
            assert store.status()["state"] == "stopped" and store.count() < 40
        resumed = subprocess.run(
            [*cli, "resume", str(stopped), "--address", head.address],
            capture_output=True,
            text=True,
            timeout=300,
            env=head.env,
        )
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    with RunStore(stopped) as store:
        results = store.results()
        assert store.status()["state"] == "finished" and len(results) == 40
        assert len({r.result.candidate.key for r in results}) == 40  # nothing evaluated twice


def test_job_runs_on_a_cluster_given_by_address(cluster, tmp_path):
    address, env = cluster
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(JOB))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cosearch.cli.main",
            "run",
            str(tmp_path / "job.yaml"),
            "--run-dir",
            str(tmp_path / "run"),
            "--address",
            address,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[6/6]" in out.stdout
