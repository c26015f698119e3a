"""The `supernet` evaluator: training that resumes exactly, candidates scored on inherited and
compressed weights, and jobs it cannot run refused before anything is written."""

from __future__ import annotations

import io

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cosearch import build  # noqa: E402
from cosearch.core import SpecError  # noqa: E402
from cosearch.evaluators.supernet import SupernetEvaluator  # noqa: E402
from cosearch.evaluators.train import TrainingSettings  # noqa: E402
from cosearch.hardware import LatencySettings, MeasuredDevice  # noqa: E402
from cosearch.job import spec_from_dict  # noqa: E402
from cosearch.search_spaces import SEARCH_SPACES, JointSpace  # noqa: E402

SPACE = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)
JOINT = JointSpace(SPACE, weight_bits=(4, 8, 32), sparsity=(0.0, 0.5))
FAST = (MeasuredDevice("local-cpu", LatencySettings(warmup_runs=2, runs=5)),)


def evaluator(epochs: int = 2, **kwargs) -> SupernetEvaluator:
    training = TrainingSettings(batch_size=128, finetune_epochs=0)
    return SupernetEvaluator(SPACE, epochs=epochs, training=training, devices=FAST, **kwargs)


def model_state(checkpoint: bytes) -> dict:
    return torch.load(io.BytesIO(checkpoint), weights_only=False)["model"]


def test_training_stopped_between_epochs_continues_as_if_never_stopped():
    straight, info = evaluator().train_supernet(JOINT, None, epochs=2)
    first, first_info = evaluator().train_supernet(JOINT, None)
    resumed, resumed_info = evaluator().train_supernet(JOINT, first)  # a fresh worker, from the stored checkpoint
    assert first_info["epochs_done"] == 1 and info["epochs_done"] == resumed_info["epochs_done"] == 2
    assert resumed_info["losses"] == info["losses"]
    a, b = model_state(straight), model_state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    again, again_info = evaluator().train_supernet(JOINT, resumed)  # all epochs done: nothing more is trained
    assert again_info["losses"] == info["losses"] and all(torch.equal(model_state(again)[k], a[k]) for k in a)


@pytest.fixture(scope="module")
def trained() -> bytes:
    checkpoint, info = evaluator(epochs=3).train_supernet(JOINT, None, epochs=3)
    assert info["losses"][-1] < info["losses"][0]  # it learns
    return checkpoint


def test_a_candidate_is_scored_on_its_inherited_and_compressed_subnet(trained):
    from cosearch.search_spaces.supernet import extract

    candidate = JOINT.decode(JOINT.sample(np.random.default_rng(0)))
    scorer = evaluator(epochs=3, supernet=trained)
    result = scorer.evaluate(candidate).result
    assert result.status == "ok", result.error
    assert result.measured["training"]["how"].startswith("inherited from the run's supernet")
    assert {"accuracy", "size_kb", "bitops", "latency_ms@local-cpu"} <= set(result.metrics)
    # The weights it starts from are the supernet's, not a fresh initialisation.
    inherited = extract(SPACE, scorer.supernet_module(), candidate.arch, (1, 8, 8), 10).state_dict()
    fresh = SPACE.build(candidate.arch, (1, 8, 8), 10).state_dict()
    supernet = model_state(trained)
    assert torch.equal(inherited["stem.conv.weight"], supernet["stem.conv.weight"])
    assert not torch.equal(inherited["stem.conv.weight"], fresh["stem.conv.weight"])


def test_fine_tune_steps_change_the_subnet_and_stop_where_told(trained, monkeypatch):
    from cosearch.evaluators import train

    steps = []
    real = train.train_epochs

    def counting(model, split, epochs, lr, settings, seed, distillation=None, device=None, max_steps=None):
        steps.append(max_steps)
        return real(model, split, epochs, lr, settings, seed, distillation, device, max_steps)

    monkeypatch.setattr("cosearch.evaluators.supernet.train_epochs", counting)
    candidate = JOINT.decode(JOINT.sample(np.random.default_rng(1)))
    plain = evaluator(epochs=3, supernet=trained).evaluate(candidate)
    tuned = evaluator(epochs=3, supernet=trained, finetune_steps=3).evaluate(candidate)
    assert steps == [3] and tuned.result.measured["training"]["finetune_steps"] == 3
    assert plain.weights != tuned.weights


@pytest.mark.parametrize("finetune_steps", [0, 2])
def test_costs_and_the_budget_filter_come_from_one_export_without_fine_tuning_and_first_with_it(
    trained, monkeypatch, finetune_steps
):
    """Without fine-tuning a candidate is inherited, then deployed once, and that file is priced,
    filtered and scored; with fine-tuning the costs come first, so a candidate over a budget is
    never fine-tuned. Either way the file measured is what it deploys."""
    from cosearch.core import Constraint
    from cosearch.evaluators import train

    exports, inherits = [], []
    real_deployment = train.deployment
    real_inherited = SupernetEvaluator.inherited
    monkeypatch.setattr(train, "deployment", lambda *a, **k: exports.append(1) or real_deployment(*a, **k))
    monkeypatch.setattr(SupernetEvaluator, "inherited", lambda *a, **k: inherits.append(1) or real_inherited(*a, **k))
    candidate = JOINT.decode(JOINT.sample(np.random.default_rng(2)))
    result = evaluator(epochs=3, supernet=trained, finetune_steps=finetune_steps).evaluate(candidate).result
    assert result.status == "ok", result.error
    assert len(exports) == (1 if finetune_steps == 0 else 2)
    graph = result.measured["latency_ms@local-cpu"]["graph"]
    assert graph.endswith("the one whose accuracy is measured" if finetune_steps == 0 else "measured before training")

    exports.clear(), inherits.clear()
    budget = (Constraint.parse("latency_ms@local-cpu<=0.000001"),)
    over = evaluator(epochs=3, supernet=trained, finetune_steps=finetune_steps, budgets=budget).evaluate(candidate)
    assert over.result.status == "infeasible" and over.weights is None
    assert "latency_ms@local-cpu" in over.result.metrics and "accuracy" not in over.result.metrics
    when = "before its accuracy was measured" if finetune_steps == 0 else "before training"
    assert over.result.error.startswith(f"over budget {when} (measured costs)")
    assert len(inherits) == (1 if finetune_steps == 0 else 0)  # never fine-tuned when over budget


def test_without_a_trained_supernet_a_candidate_fails_clearly():
    candidate = JOINT.decode(JOINT.sample(np.random.default_rng(0)))
    result = evaluator().evaluate(candidate).result
    assert result.status == "failed" and "supernet is not trained yet" in result.error


def test_max_steps_stops_training_after_that_many_steps():
    from cosearch.evaluators.data import load_dataset
    from cosearch.evaluators.train import train_epochs

    split = load_dataset().train
    model = SPACE.build(JOINT.decode(JOINT.sample(np.random.default_rng(2))).arch, (1, 8, 8), 10)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    train_epochs(model, split, 5, 1e-3, TrainingSettings(batch_size=64), 0, max_steps=7)
    assert len(calls) == 7


JOB = {
    "name": "supernet",
    "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
    "evaluator": {"name": "supernet", "epochs": 2},
    "strategy": {"name": "random"},
    "objectives": ["accuracy", "size_kb"],
    "resources": {"trials": 3, "concurrency": 2, "seed": 0},
}


@pytest.mark.parametrize(
    ("change", "field", "says"),
    [
        (
            {"search_space": {"name": "timm", "model": "resnet18"}},
            "search_space.name",
            "a space with a supernet: ['darts', 'enas', 'mobilenet', 'nb201']",
        ),
        ({"evaluator": {"name": "supernet", "sandwich": 2}}, "evaluator.sandwich", "no largest and smallest"),
        ({"compression": {"channel_ratio": [0.0, 0.5]}}, "compression.channel_ratio", "cannot vary channel_ratio"),
        ({"compression": {"distill_alpha": [0.0, 0.5]}}, "compression.distill_alpha", "trains elastic"),
        (
            {
                "search_space": {"name": "mobilenet"},
                "evaluator": {"name": "supernet", "sandwich": 1, "sampling": "fair"},
            },
            "evaluator.sampling",
            "uniform with sandwich > 0",
        ),
        ({"evaluator": {"name": "supernet", "sampling": "even"}}, "evaluator.sampling", "one of 'uniform', 'fair'"),
        ({"evaluator": {"name": "supernet", "epochs": 0}}, "evaluator.epochs", "epochs >= 1"),
        ({"evaluator": {"name": "supernet", "bn_batches": 0}}, "evaluator.bn_batches", "bn_batches >= 1"),
        ({"evaluator": {"name": "supernet", "finetune_step": 1}}, "evaluator.finetune_step", "finetune_steps"),
    ],
)
def test_a_job_the_supernet_cannot_run_is_refused_naming_the_field(change, field, says):
    job = {**JOB, **change}
    with pytest.raises(SpecError) as error:
        build.check(spec_from_dict(job))
    assert error.value.field == field and says in str(error.value), str(error.value)


def test_the_example_supernet_job_is_valid():
    from pathlib import Path

    job = build.load_job(Path(__file__).parents[2] / "examples" / "digits_supernet.yaml")
    assert job.evaluator.name == "supernet" and job.task.input_shape == (1, 16, 16)


MOBILE = SEARCH_SPACES.create(
    "mobilenet", stage_channels=(8, 16), stage_strides=(1, 2), depths=(1, 2), head_channels=16
)
MOBILE_JOINT = JointSpace(MOBILE, weight_bits=(4, 32), sparsity=(0.0, 0.5))


def test_the_sandwich_rule_trains_the_largest_on_labels_and_the_rest_on_its_answers(monkeypatch):
    """Per step: the largest subnet at the mildest compression, then the smallest at the harshest and
    N random ones, each taught by the largest's output; and an elastic supernet sorts its channels."""
    from cosearch.search_spaces import supernet as shared

    scorer = SupernetEvaluator(
        MOBILE, epochs=1, sandwich=2, training=TrainingSettings(batch_size=256, finetune_epochs=0), devices=FAST
    )
    paths, sorted_after = [], []
    real = shared.path_logits
    monkeypatch.setattr(shared, "path_logits", lambda net, c, x: paths.append(c) or real(net, c, x))
    kind = type(MOBILE.supernet((1, 8, 8), 10))
    sort = kind.sort_channels
    monkeypatch.setattr(kind, "sort_channels", lambda net, opt: sorted_after.append(len(paths)) or sort(net, opt))
    checkpoint, info = scorer.train_supernet(MOBILE_JOINT, None)
    steps = len(paths) // 4
    assert steps >= 3 and len(paths) == 4 * steps and sorted_after == [len(paths)]  # sorted once, after the epoch
    largest, smallest = MOBILE.extremes()
    mildest = [all(lp.weight_bits == 32 and lp.sparsity == 0 for lp in c.policy.layers.values()) for c in paths[::4]]
    harshest = [{(lp.weight_bits, lp.sparsity) for lp in c.policy.layers.values()} == {(4, 0.5)} for c in paths[1::4]]
    assert all(c.arch == largest for c in paths[::4]) and all(mildest)
    assert all(c.arch == smallest for c in paths[1::4]) and all(harshest)
    assert len({c.key for c in paths[2::4] + paths[3::4]}) > 1 and np.isfinite(info["losses"]).all()
    candidate = MOBILE_JOINT.decode(MOBILE_JOINT.sample(np.random.default_rng(3)))
    result = SupernetEvaluator(MOBILE, epochs=1, supernet=checkpoint, devices=FAST).evaluate(candidate).result
    assert result.status == "ok", result.error


def test_activation_bits_are_elastic_the_supernet_trains_and_scores_quantized_inputs():
    """A job may search activation bits with the supernet: each step's path reads its inputs at the
    sampled bits, and a candidate is scored with its inputs calibrated as `train` does it."""
    build.check(spec_from_dict({**JOB, "compression": {"weight_bits": [8, 32], "activation_bits": [8, 32]}}))
    joint = JointSpace(SPACE, weight_bits=(8, 32), activation_bits=(8, 32))
    checkpoint, info = evaluator(epochs=1).train_supernet(joint, None)
    assert np.isfinite(info["losses"]).all()
    rng = np.random.default_rng(1)
    candidate = next(c for c in (joint.decode(joint.sample(rng)) for _ in range(50)) if c.policy.layers)
    assert any(lp.activation_bits == 8 for lp in candidate.policy.layers.values())
    result = evaluator(epochs=1, supernet=checkpoint).evaluate(candidate).result
    assert result.status == "ok", result.error
    assert "activations" in result.measured  # its inputs were calibrated, as the train evaluator records


def test_channel_ratio_is_elastic_on_mobilenet_each_step_runs_a_pruned_path_and_scores_the_pruned_subnet(
    monkeypatch,
):
    """Structured pruning on the elastic supernet: the job is accepted (refused on nb201, above),
    training steps run paths pruned at the sampled ratio, and a candidate's subnet is pruned to
    the first channels of each group, the path the supernet trained for it."""
    from cosearch.search_spaces import supernet as shared

    job = {**JOB, "search_space": {"name": "mobilenet"}, "compression": {"channel_ratio": [0.0, 0.5]}}
    build.check(spec_from_dict(job))
    joint = JointSpace(MOBILE, weight_bits=(8, 32), channel_ratio=(0.0, 0.5))
    ratios, real = [], shared.path_logits

    def recording(net, candidate, x):
        out = real(net, candidate, x)
        ratios.append(net.kept(64) / 64)  # the share of each group its path kept
        return out

    monkeypatch.setattr(shared, "path_logits", recording)
    scorer = SupernetEvaluator(MOBILE, epochs=1, training=TrainingSettings(batch_size=128), devices=FAST)
    checkpoint, info = scorer.train_supernet(joint, None)
    assert set(ratios) == {1.0, 0.5} and np.isfinite(info["losses"]).all()
    scorer = SupernetEvaluator(MOBILE, epochs=1, supernet=checkpoint, devices=FAST)
    assert scorer.channel_importance == "first"
    arch = joint.decode(joint.sample(np.random.default_rng(0))).arch
    plain, pruned = (JointSpace(MOBILE, channel_ratio=(r,)).extreme(arch) for r in (0.0, 0.5))
    results = [scorer.evaluate(c).result for c in (plain, pruned)]
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert results[1].metrics["size_kb"] < 0.5 * results[0].metrics["size_kb"]


def test_without_elastic_compression_the_supernet_trains_architectures_and_candidates_are_compressed_after(
    monkeypatch,
):
    """`elastic_compression: false`: every step runs an uncompressed path, a candidate is still
    scored compressed (as `train` compresses a float network), and the job may then search any
    technique that needs no teacher (refused, naming the field, with elastic compression)."""
    from cosearch.search_spaces import supernet as shared

    searched = {"weight_bits": [4, 32], "rank_ratio": [1.0, 0.5]}
    with pytest.raises(SpecError, match="cannot vary rank_ratio"):
        build.check(spec_from_dict({**JOB, "compression": searched}))
    after = {"name": "supernet", "epochs": 2, "elastic_compression": False}
    build.check(spec_from_dict({**JOB, "compression": searched, "evaluator": after}))
    with pytest.raises(SpecError, match="needs a teacher") as error:
        build.check(spec_from_dict({**JOB, "compression": {"distill_alpha": [0.0, 0.5]}, "evaluator": after}))
    assert error.value.field == "compression.distill_alpha"

    policies, real = [], shared.path_logits
    monkeypatch.setattr(shared, "path_logits", lambda net, c, x: policies.append(c.policy) or real(net, c, x))
    checkpoint, info = evaluator(epochs=1, elastic_compression=False).train_supernet(JOINT, None)
    assert policies and all(not p.layers for p in policies) and np.isfinite(info["losses"]).all()
    scorer = evaluator(epochs=1, supernet=checkpoint, elastic_compression=False)
    arch = JOINT.decode(JOINT.sample(np.random.default_rng(0))).arch
    plain, coarse = JOINT.extreme(arch, mildest=True), JOINT.extreme(arch, mildest=False)
    results = [scorer.evaluate(c).result for c in (plain, coarse)]
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert results[1].metrics["size_kb"] < 0.25 * results[0].metrics["size_kb"]  # 4-bit, half sparse
    assert results[1].measured["training"]["elastic_compression"] is False


def test_fair_sampling_trains_every_op_of_every_edge_once_per_step_with_one_update(monkeypatch):
    """`sampling: fair` (FairNAS): each step runs the paths of `JointSpace.fair_samples` (as many as
    an edge has ops, every op of every edge in one of them) on one batch, and updates the weights
    once, from their summed gradients."""
    from cosearch.search_spaces import supernet as shared

    paths, drawn, updates, real = [], [], [], shared.path_logits
    monkeypatch.setattr(shared, "path_logits", lambda net, c, x: paths.append(c) or real(net, c, x))
    real_step, real_fair = torch.optim.Adam.step, JointSpace.fair_samples
    monkeypatch.setattr(torch.optim.Adam, "step", lambda opt, *a, **k: updates.append(len(paths)) or real_step(opt))
    monkeypatch.setattr(JointSpace, "fair_samples", lambda joint, rng: drawn.extend(s := real_fair(joint, rng)) or s)
    checkpoint, _ = evaluator(epochs=1, sampling="fair").train_supernet(JOINT, None)
    ops = len(SPACE.choices()[0].options)
    assert len(updates) >= 3 and updates == [ops * (k + 1) for k in range(len(updates))]
    assert [c.key for c in paths] == [JOINT.decode(s).key for s in drawn]
    first_step = drawn[:ops]
    assert all(sorted(s[c.name] for s in first_step) == sorted(c.options) for c in SPACE.choices())
    candidate = JOINT.decode(JOINT.sample(np.random.default_rng(0)))
    result = evaluator(epochs=1, supernet=checkpoint, sampling="fair").evaluate(candidate).result
    assert result.status == "ok" and result.measured["training"]["sampling"] == "fair", result.error
