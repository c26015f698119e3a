from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("torch")

from cosearch.core import Candidate, LayerPolicy, Policy
from cosearch.evaluators.data import load_dataset
from cosearch.evaluators.train import TrainEvaluator, TrainingSettings
from cosearch.hardware import LatencySettings, MeasuredDevice
from cosearch.search_spaces import SEARCH_SPACES

SPACE = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
ARCH = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}
FAST_LATENCY = (MeasuredDevice("local-cpu", LatencySettings(warmup_runs=5, runs=30)),)


def test_digits_splits_are_disjoint_and_stratified():
    data = load_dataset("digits", None, 0.2, 0.2, 0)
    assert data.input_shape == (1, 8, 8) and data.num_classes == 10
    total = len(data.train.y) + len(data.val.y) + len(data.test.y)
    assert total == 1797
    rows = {x.tobytes() for x in data.train.x}
    assert not any(x.tobytes() in rows for x in data.test.x[:50])
    assert set(np.unique(data.val.y)) == set(range(10))


def test_evaluation_trains_compresses_and_measures():
    candidate = Candidate(
        ARCH, Policy({slot: LayerPolicy(weight_bits=8, sparsity=0.5) for slot in SPACE.layer_slots(ARCH)})
    )
    evaluator = TrainEvaluator(SPACE, training=TrainingSettings(epochs=3, finetune_epochs=1), devices=FAST_LATENCY)
    evaluation = evaluator.evaluate(candidate)
    result = evaluation.result
    assert result.status == "ok", result.error
    assert result.metrics["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert result.metrics["latency_ms@local-cpu"] > 0
    assert result.measured["latency_ms@local-cpu"]["runs"] == 30
    assert result.measured["accuracy"]["split"] == "val"
    dense = Candidate(
        ARCH, Policy({slot: LayerPolicy(weight_bits=32, sparsity=0.0) for slot in SPACE.layer_slots(ARCH)})
    )
    dense_result = (
        TrainEvaluator(SPACE, training=TrainingSettings(epochs=1, finetune_epochs=0), devices=FAST_LATENCY)
        .evaluate(dense)
        .result
    )
    assert result.metrics["size_kb"] < dense_result.metrics["size_kb"] / 3  # 8-bit and half the weights

    import torch

    state = torch.load(io.BytesIO(evaluation.weights), weights_only=True)
    assert not any("parametrizations" in key for key in state)  # deployable, baked weights


def test_diverging_training_is_a_failed_result():
    candidate = Candidate(ARCH)
    settings = TrainingSettings(epochs=2, finetune_epochs=0, learning_rate=1e12)
    result = TrainEvaluator(SPACE, training=settings, devices=FAST_LATENCY).evaluate(candidate).result
    assert result.status == "failed"
    assert "loss became" in result.error


def test_unbuildable_candidate_is_a_failed_result():
    result = TrainEvaluator(SPACE, devices=FAST_LATENCY).evaluate(Candidate({"cell": "|bogus~0|"})).result
    assert result.status == "failed" and "arch.cell" in result.error


def test_over_budget_candidates_are_never_trained():
    from cosearch.core import Constraint

    candidate = Candidate(ARCH)  # float, dense: the largest this arch gets
    budgets = (Constraint.parse("size_kb <= 1"),)
    evaluator = TrainEvaluator(SPACE, training=TrainingSettings(epochs=50), devices=FAST_LATENCY, budgets=budgets)
    result = evaluator.evaluate(candidate).result
    assert result.status == "infeasible" and "size_kb <= 1" in result.error
    assert result.measured["over_budget_stage"] == "predicted"  # caught by the cheap costs: nothing measured
    assert (
        result.metrics["size_kb"] > 1 and result.metrics["bitops"] > 0 and "latency_ms@local-cpu" not in result.metrics
    )
    assert "train_s" not in result.timings_s and "accuracy" not in result.metrics


def test_a_measured_latency_over_budget_also_saves_the_training():
    from cosearch.core import Constraint

    budgets = (Constraint.parse("size_kb <= 1000"), Constraint.parse("latency_ms <= 0.000001"))
    evaluator = TrainEvaluator(SPACE, training=TrainingSettings(epochs=50), devices=FAST_LATENCY, budgets=budgets)
    result = evaluator.evaluate(Candidate(ARCH)).result
    assert result.status == "infeasible" and result.measured["over_budget_stage"] == "measured"
    assert result.metrics["latency_ms@local-cpu"] > 0.000001 and "train_s" not in result.timings_s


def test_without_prefilter_over_budget_candidates_are_trained():
    from cosearch.core import Constraint

    budgets = (Constraint.parse("size_kb <= 1"),)
    training = TrainingSettings(epochs=1, finetune_epochs=0)
    result = (
        TrainEvaluator(SPACE, training=training, devices=FAST_LATENCY, budgets=budgets, prefilter=False)
        .evaluate(Candidate(ARCH))
        .result
    )
    assert result.status == "ok" and "accuracy" in result.metrics and result.metrics["size_kb"] > 1


def test_costs_measured_before_training_match_the_trained_model():
    from cosearch.compressors import compress, size_bytes

    candidate = Candidate(
        ARCH, Policy({slot: LayerPolicy(weight_bits=4, sparsity=0.75) for slot in SPACE.layer_slots(ARCH)})
    )
    evaluator = TrainEvaluator(SPACE, training=TrainingSettings(epochs=1, finetune_epochs=1), devices=FAST_LATENCY)
    result = evaluator.evaluate(candidate).result
    untrained = SPACE.build(ARCH, (1, 8, 8), 10)
    assert size_bytes(compress(untrained, candidate.policy), candidate.policy) / 1024 == pytest.approx(
        result.metrics["size_kb"], rel=1e-3
    )


def test_structured_pruning_shrinks_the_model_and_its_weights_reload():
    from cosearch.compressors import prune_channels

    layers = {slot: LayerPolicy(weight_bits=8, sparsity=0.0) for slot in SPACE.layer_slots(ARCH)}
    evaluator = TrainEvaluator(SPACE, training=TrainingSettings(epochs=2, finetune_epochs=1), devices=FAST_LATENCY)
    whole = evaluator.evaluate(Candidate(ARCH, Policy(layers))).result
    evaluation = evaluator.evaluate(Candidate(ARCH, Policy(layers, channel_ratio=0.5)))
    pruned = evaluation.result
    assert pruned.status == "ok", pruned.error
    assert pruned.metrics["size_kb"] < 0.5 * whole.metrics["size_kb"]
    assert pruned.metrics["accuracy"] > 0.2  # well above chance (0.1) after a short fine-tune

    import torch

    rebuilt = prune_channels(SPACE.build(ARCH, (1, 8, 8), 10), 0.5, (1, 8, 8))
    rebuilt.load_state_dict(torch.load(io.BytesIO(evaluation.weights), weights_only=True))
