"""A real multi-node Ray cluster on this machine (`ray.cluster_utils.Cluster`: a raylet per node):
measured latency routed to the node that declares the device, and a node removed mid-run whose
evaluations are retried elsewhere, the run ending with exactly its trials. Each driver runs in
its own process session, so whatever it started is stopped with it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.ray

DRIVER = """
import json, sys, time
import ray
from ray.cluster_utils import Cluster
from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

job, run_dir, remove_after = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
board = cluster.add_node(num_cpus=1, resources={"device:board": 1})
ray.init(address=cluster.address, log_to_driver=False)
cluster.wait_for_nodes()
removed = []

def listener(state):
    if remove_after and state.evaluated >= remove_after and not removed:
        cluster.remove_node(board)  # its raylet and workers die with the evaluations they run
        removed.append(time.time())

try:
    state = Controller.start(spec_from_dict(job), run_dir, listener=listener).run()
    with RunStore(run_dir) as store:
        results = [r.result.to_json() for r in store.results()]
    print(json.dumps({"finished": state.finished, "results": results, "board_node": board.node_id,
                      "removed": bool(removed)}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def drive(job: dict, run_dir, remove_after: int = 0) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER), json.dumps(job), str(run_dir), str(remove_after)],
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_measured_latency_runs_on_the_node_that_has_the_device(tmp_path):
    job = {
        "name": "routed",
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "compression": {"weight_bits": [8], "sparsity": [0.0]},
        "strategy": {"name": "random"},
        "devices": {"board": {"kind": "measured", "resource": "device:board", "warmup_runs": 2, "runs": 30}},
        "objectives": ["accuracy", "latency_ms@board"],
        "training": {"epochs": 1, "finetune_epochs": 0},
        "resources": {"trials": 2, "concurrency": 2},
    }
    out = drive(job, tmp_path / "run")
    assert out["finished"] and [r["status"] for r in out["results"]] == ["ok", "ok"]
    assert {r["measured"]["latency_ms@board"]["node_id"] for r in out["results"]} == {out["board_node"]}


def test_a_node_removed_mid_run_loses_nothing_and_the_run_ends_with_its_trials(tmp_path):
    job = {
        "name": "node-loss",
        "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
        "strategy": {"name": "random"},
        "evaluator": {"name": "synthetic", "delay_s": 1.0},
        "resources": {"trials": 8, "concurrency": 2, "seed": 0},
    }
    out = drive(job, tmp_path / "run", remove_after=2)
    assert out["removed"] and out["finished"]
    results = out["results"]
    assert len(results) == 8 and len({json.dumps(r["candidate"], sort_keys=True) for r in results}) == 8
    assert all(r["status"] == "ok" for r in results), [r["error"] for r in results]  # retried on the head
