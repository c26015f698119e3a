"""The latency a search reports is measured on the graph `cosearch export` writes, run as users run it.

Before training the search deploys the untrained model (ranges calibrated on seeded noise); the
export deploys the trained one (ranges calibrated on the training images). Only numbers differ:
ONNX Runtime runs the same kernels on the same shapes, with default session options both times.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosearch.compressors import bake  # noqa: E402
from cosearch.evaluators.train import CompressionSettings, DataSettings, TrainEvaluator, TrainingSettings  # noqa: E402
from cosearch.hardware.lut import graph_nodes  # noqa: E402
from cosearch.hardware.onnx_runtime import LatencySettings, measure_latency  # noqa: E402
from cosearch.hardware.qdq import deployment  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES, JointSpace  # noqa: E402

PARAMS = {"nb201": {"channels": 8, "cells_per_stage": 1}, "darts": {"channels": 8}, "enas": {"channels": 8}}


@pytest.mark.parametrize("space_name", ["nb201", "darts", "enas", "mobilenet"])
def test_the_search_times_the_graph_export_writes(space_name):
    space = SEARCH_SPACES.create(space_name, **PARAMS.get(space_name, {}))
    joint = JointSpace(
        space, weight_bits=[4, 8, 32], sparsity=[0.0, 0.5], activation_bits=[8, 32], channel_ratio=[0.0, 0.5]
    )
    evaluator = TrainEvaluator(
        space, DataSettings(), TrainingSettings(epochs=0, finetune_epochs=0), compression=CompressionSettings()
    )
    data = evaluator.data.load()
    rng = np.random.default_rng(0)
    mixes = set()
    for _ in range(3):
        candidate = joint.decode(joint.sample(rng))
        torch.manual_seed(0)
        model = space.build(candidate.arch, data.input_shape, data.num_classes)
        _, searched = evaluator.deployable(model, candidate, data.input_shape)
        trained, _, _ = evaluator.build_trained(candidate, model)  # calibrated on the training images
        c = evaluator.compression
        exported = deployment(
            bake(trained), candidate.policy, data.input_shape, images=c.images(data), calibration=c.calibration
        )
        assert Counter(graph_nodes(searched, data.input_shape).keys) == Counter(
            graph_nodes(exported, data.input_shape).keys
        ), candidate.policy.summary()
        mixes.add(candidate.policy.summary())
    assert len(mixes) == 3


def test_the_two_files_time_alike():
    """Same kernels, so the same latency within the measurement's own spread (rounds interleaved)."""
    space = SEARCH_SPACES.create("nb201", channels=32, cells_per_stage=1)
    joint = JointSpace(space, weight_bits=[8], sparsity=[0.0], activation_bits=[8])
    evaluator = TrainEvaluator(space, DataSettings(), TrainingSettings(epochs=0, finetune_epochs=0))
    data = evaluator.data.load()
    candidate = joint.decode(joint.sample(np.random.default_rng(1)))
    torch.manual_seed(0)
    model = space.build(candidate.arch, data.input_shape, data.num_classes)
    _, searched = evaluator.deployable(model, candidate, data.input_shape)
    trained, _, _ = evaluator.build_trained(candidate, model)
    exported = deployment(bake(trained), candidate.policy, data.input_shape, images=data.train.x[:256])
    settings = LatencySettings(warmup_runs=20, runs=100)
    rounds = {"searched": [], "exported": []}
    for _ in range(4):
        for name, file in (("searched", searched), ("exported", exported)):
            rounds[name].append(measure_latency(file, data.input_shape, settings)["median_ms"])
    low, high = min(rounds["searched"]), max(rounds["searched"])
    spread = max(high - low, 0.1 * low)
    assert abs(min(rounds["exported"]) - low) <= 2 * spread, rounds
