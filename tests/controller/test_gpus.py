"""`resources.gpus_per_trial`: Ray reserves the GPU share, the worker trains on the GPU it was
given, and a cluster without GPUs is refused before anything is written. On a machine without
a GPU the plumbing is checked with a GPU that Ray is told exists."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch

from cosearch.controller import Controller
from cosearch.core.errors import CosearchError, EvaluationError
from cosearch.evaluators import train
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray

JOB = {
    "name": "gpus",
    "task": {"dataset": "digits"},
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "strategy": {"name": "random"},
    "training": {"epochs": 1, "finetune_epochs": 0},
    "latency": {"runs": 30, "warmup_runs": 5},
    "resources": {"trials": 2, "concurrency": 2, "seed": 0, "gpus_per_trial": 0.5},
}


def test_a_job_asking_for_gpus_where_there_are_none_fails_before_anything_is_written(ray_local, tmp_path):
    assert ray_local.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(CosearchError, match=r"gpus_per_trial is 0.5, but local Ray .* has 0 GPUs"):
        Controller.start(spec_from_dict(JOB), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_worker_trains_on_the_gpu_ray_assigned_it(monkeypatch):
    monkeypatch.setattr(train, "_ray_gpu_ids", lambda: [])
    assert train.training_device() == torch.device("cpu")
    monkeypatch.setattr(train, "_ray_gpu_ids", lambda: [3])  # Ray made it the only visible one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert train.training_device() == torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EvaluationError, match=r"Ray assigned GPU \[3\].*PyTorch sees no CUDA device"):
        train.training_device()


DRIVER = """
import json, sys
import ray
from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)  # one GPU, real or declared
state = Controller.start(spec_from_dict(json.loads(sys.argv[1])), sys.argv[2]).run()
with RunStore(sys.argv[2]) as store:
    print(json.dumps([r.result.to_json() for r in store.results()]))
ray.shutdown()
"""


def test_two_trainings_share_one_gpu_through_ray(tmp_path):
    """Ray hands each evaluation half of the GPU; the worker sees it in CUDA_VISIBLE_DEVICES and
    trains there, or (PyTorch without CUDA, as on this CI machine) fails it clearly."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(DRIVER), json.dumps(JOB), str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=600,
        start_new_session=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == 2
    if torch.cuda.is_available():
        assert all(r["status"] == "ok" and r["measured"]["training"]["device"].startswith("cuda") for r in results)
    else:
        for r in results:
            assert r["status"] == "failed"
            assert "Ray assigned GPU [0]" in r["error"] and "PyTorch sees no CUDA device" in r["error"]
