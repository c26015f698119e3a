"""`--address`: the same job on a Ray cluster started apart from the driver (here, on this machine)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.ray


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def cluster(tmp_path, sessions):
    """A head node in its own process session, so stopping it touches no other Ray (never `ray stop`)."""
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray_cli is None:
        pytest.skip("the ray command line is not installed")
    port = free_port()
    # A short temp dir: Ray's unix socket paths must fit in 107 characters.
    ray_tmp = tempfile.mkdtemp(prefix="cosearch-ray-")
    # Token authentication on, as Ray's docs ask of a cluster; the driver then reads the same token.
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_AUTH_MODE": "token"}
    head = subprocess.Popen(
        [
            ray_cli,
            "start",
            "--head",
            "--block",
            f"--port={port}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 90
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.time() > deadline or head.poll() is not None:
                pytest.fail("the Ray head did not start")
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", env
    finally:
        sessions.kill(head.pid)
        head.wait(timeout=30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_job_runs_on_a_cluster_given_by_address(cluster, tmp_path):
    address, env = cluster
    job = {
        "name": "cluster",
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "evaluator": {"name": "synthetic"},
        "strategy": {"name": "random"},
        "resources": {"trials": 6, "concurrency": 2},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
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
