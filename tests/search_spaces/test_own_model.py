"""Your own network searched for its compression: timm models and a factory from your code."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

torch = pytest.importorskip("torch")

from cosearch import build  # noqa: E402
from cosearch.core.errors import SpecError  # noqa: E402
from cosearch.job import spec_from_dict  # noqa: E402

COMPRESSION = {
    "weight_bits": [4, 8, 32],
    "sparsity": [0.0, 0.5],
    "activation_bits": [8, 32],
    "channel_ratio": [0.25],
    "rank_ratio": [0.5, 1.0],
}


def job(space: dict, **sections) -> dict:
    return {
        "task": {"dataset": "digits", "image_size": 16},
        "search_space": space,
        "compression": COMPRESSION,
        "training": {"epochs": 1, "finetune_epochs": 1},
        "latency": {"runs": 30, "warmup_runs": 5},
        **sections,
    }


def evaluate_one(data: dict):
    spec = build.check(spec_from_dict(data))
    joint = build.make_joint_space(spec)
    candidate = joint.decode(joint.sample(np.random.default_rng(0)))
    return candidate, build.make_evaluator(spec).evaluate(candidate).result


@pytest.mark.parametrize(
    "model",
    ["resnet18", "mobilenetv3_small_100", pytest.param("efficientnet_b0", marks=pytest.mark.slow)],
)
def test_a_timm_model_is_compressed_trained_deployed_and_measured(model):
    candidate, result = evaluate_one(job({"name": "timm", "model": model}))
    assert result.status == "ok", result.error
    summary = candidate.policy.summary()
    assert "channels -25%" in summary and "a8" in summary and "w4" in summary  # every technique in play
    float_kb = (
        sum(
            p.numel()
            for p in build.make_space(spec_from_dict(job({"name": "timm", "model": model})))
            .make((1, 16, 16), 10)
            .parameters()
        )
        * 4
        / 1024
    )
    assert result.metrics["size_kb"] < float_kb and result.metrics["latency_ms@local-cpu"] > 0
    assert 0 <= result.metrics["accuracy"] <= 1


def test_a_module_from_your_code_is_searched_like_any_network():
    candidate, result = evaluate_one(job({"name": "module", "factory": "cosearch.testing.models:small_cnn"}))
    assert result.status == "ok", result.error
    assert set(candidate.policy.layers) == {"0", "3", "8"}  # its conv and linear layers, by module name


@pytest.fixture()
def resnet18_checkpoint(tmp_path):
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=10, in_chans=1)
    path = tmp_path / "resnet18.pt"
    torch.save(model.state_dict(), path)
    return str(path), model.state_dict()


def test_every_candidate_starts_from_the_checkpoint(resnet18_checkpoint):
    path, state = resnet18_checkpoint
    spec = build.check(spec_from_dict(job({"name": "timm", "model": "resnet18", "checkpoint": path})))
    evaluator = build.make_evaluator(spec)
    candidate = build.make_joint_space(spec).decode(build.make_joint_space(spec).sample(np.random.default_rng(1)))
    start = evaluator.initial_model(candidate, evaluator.data.load()).state_dict()
    assert all(torch.equal(start[k], state[k]) for k in state)


def test_a_distilling_job_without_a_teacher_learns_from_the_model_itself(resnet18_checkpoint):
    path, _ = resnet18_checkpoint
    data = job({"name": "timm", "model": "resnet18", "checkpoint": path})
    data["compression"] = {**COMPRESSION, "distill_alpha": [0.5]}
    spec = build.check(spec_from_dict(data))
    teacher = build.teacher_spec(spec)
    assert (teacher.model, teacher.checkpoint) == ("resnet18", path)
    nb201 = spec_from_dict({"compression": {"distill_alpha": [0.5]}})
    assert build.teacher_spec(nb201) is None  # other spaces still need one named


@pytest.mark.parametrize(
    "space, field, words",
    [
        ({"name": "timm", "model": "resnet_18"}, "search_space.model", "resnet18"),
        ({"name": "module", "factory": "no_such_package.models:net"}, "search_space.factory", "importable"),
        ({"name": "module", "factory": "cosearch.testing.models:not_a_network"}, "search_space.factory", "nn.Module"),
        ({"name": "module", "factory": "not a path"}, "search_space.factory", "package.module:function"),
    ],
)
def test_a_bad_model_is_refused_naming_the_field(space, field, words):
    with pytest.raises(SpecError, match=words) as error:
        build.check(spec_from_dict(job(space)))
    assert error.value.field == field


def test_a_checkpoint_of_another_architecture_or_task_is_refused(tmp_path):
    import timm

    other = tmp_path / "resnet34.pt"
    torch.save(timm.create_model("resnet34", num_classes=10, in_chans=1).state_dict(), other)
    with pytest.raises(SpecError, match="keys differ") as error:
        build.check(spec_from_dict(job({"name": "timm", "model": "resnet18", "checkpoint": str(other)})))
    assert error.value.field == "search_space.checkpoint"
    imagenet = tmp_path / "imagenet.pt"
    torch.save(timm.create_model("resnet18", in_chans=1).state_dict(), imagenet)
    with pytest.raises(SpecError, match="10 classes"):
        build.check(spec_from_dict(job({"name": "timm", "model": "resnet18", "checkpoint": str(imagenet)})))


def test_cli_run_refuses_a_bad_checkpoint_with_exit_2_and_writes_nothing(tmp_path, cosearch_cli):
    (tmp_path / "bad.pt").write_text("not a state dict")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job({"name": "timm", "model": "resnet18", "checkpoint": str(tmp_path / "bad.pt")})))
    out = cosearch_cli("run", str(path), "--run-dir", str(tmp_path / "run"), timeout=120)
    assert out.returncode == 2 and "search_space.checkpoint" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()
