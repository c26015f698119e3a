"""A stored run without training, for tests and benchmarks of what reads runs (the report, pareto, export rules)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cosearch.build import make_joint_space
from cosearch.controller import RunStore
from cosearch.core import Result
from cosearch.job import spec_from_dict

JOB = {
    "name": "rep",
    "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
    "evaluator": {"name": "synthetic"},
    "objectives": ["accuracy", "latency_ms", "size_kb"],
    "budgets": ["latency_ms <= 1.0", "size_kb <= 45"],
    "resources": {"trials": 40},
}


def make_run(path: str | Path, n: int = 30, seed: int = 0) -> None:
    """A stored run without training: real nb201 candidates, metrics drawn at random on two
    devices, a few over budget before training and two failures."""
    job = spec_from_dict(JOB)
    joint = make_joint_space(job)
    rng = np.random.default_rng(seed)
    with RunStore(path, create=True) as store:
        store.save_job(job.to_json())
        seen = set()
        while len(seen) < n:
            candidate = joint.decode(joint.sample(rng))
            if candidate.key in seen:
                continue
            seen.add(candidate.key)
            k = len(seen)
            latency = float(rng.uniform(0.2, 1.6))
            metrics = {
                "latency_ms@local-cpu": latency,
                "latency_ms@rpi4": float(latency * rng.uniform(2.0, 6.0)),
                "size_kb": float(rng.uniform(5, 60)),
            }
            if k % 11 == 0:
                store.add(Result.failed(candidate, "EvaluationError: loss became nan"))
            elif k % 7 == 0:
                store.add(Result(candidate, "infeasible", metrics, "over budget before training"))
            else:
                accuracy = 0.6 + 0.35 * (1 - np.exp(-latency)) + float(rng.normal(0, 0.03))
                store.add(Result(candidate, "ok", {**metrics, "accuracy": min(accuracy, 0.999)}))
        store.set_status("finished")
