"""A cosearch strategy driving your own Ray Tune trainable: `python examples/tune_searcher.py`.

The trainable is yours (here: train the trial's compressed NB201 network on the digits for two
epochs and report its validation accuracy and size); cosearch's `gp` strategy proposes the joint
candidates and ranks the results by constrained Pareto dominance over both metrics. About 90 s
on 2 CPU cores. Needs Ray Tune: `pip install "ray[tune]"`.
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from ray import tune

from cosearch.compressors import bake, size_bytes
from cosearch.evaluators.data import load_dataset
from cosearch.integrations.tune import CosearchSearcher, build_model, candidate_of

SPACE = {"name": "nb201", "channels": 8, "cells_per_stage": 1}


def trainable(config: dict) -> dict:
    data = load_dataset("digits")
    model = build_model(config, SPACE, data.input_shape, data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
    for _ in range(2):
        for batch in torch.randperm(len(y)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        predicted = model(torch.from_numpy(data.val.x)).argmax(1).numpy()
    size_kb = size_bytes(bake(model), candidate_of(config).policy) / 1024
    return {"accuracy": float(np.mean(predicted == data.val.y)), "size_kb": size_kb}


def main() -> None:
    searcher = CosearchSearcher(
        space=SPACE,
        strategy="gp",
        objectives=["accuracy", "size_kb"],
        budgets=["size_kb <= 20"],
        compression={"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
    )
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, num_samples=12, max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        tuner.fit()
    print(f"{len(searcher.completed)} trials; the feasible Pareto set (size_kb <= 20):")
    for result in sorted(searcher.pareto(), key=lambda r: -r.metrics["accuracy"]):
        policy = result.candidate.policy.summary()
        print(f"  accuracy {result.metrics['accuracy']:.2%}  size_kb {result.metrics['size_kb']:.1f}  {policy}")


if __name__ == "__main__":
    main()
