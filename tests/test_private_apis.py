"""Every private dependency API that cosearch uses (all in cosearch/_private.py), called for real.

A dependency release that renames or changes one fails here, by name.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cosearch import _private

PACKAGE = Path(__file__).resolve().parents[1] / "cosearch"


def test_optuna_trial_is_the_asked_trial_and_takes_constraints():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    asked = study.ask({"x": optuna.distributions.FloatDistribution(0.0, 1.0)})
    trial = _private.optuna_trial(study, asked.number)
    assert trial.number == asked.number and trial.params == asked.params
    trial.set_constraint("budget", -1.0)
    study.tell(trial, 0.5)
    (frozen,) = study.get_trials(deepcopy=False)
    assert frozen.state == optuna.trial.TrialState.COMPLETE and frozen.values == [0.5]


def test_optuna_genetic_sampler_generations_and_parents_read_and_written():
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    def study_of(sampler):
        study = optuna.create_study(sampler=sampler)
        for _ in range(12):  # three generations of 4
            trial = study.ask(x)
            study.tell(trial, trial.params["x"])
        return study

    study = study_of(optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    key = _private.optuna_generation_key(study.sampler)
    assert [t.system_attrs[key] for t in study.get_trials(deepcopy=False)] == [0] * 4 + [1] * 4 + [2] * 4
    parents = _private.optuna_parents(study)
    assert sorted(parents) == [1, 2] and all(len(numbers) == 4 for numbers in parents.values())
    assert all(0 <= n < 12 for numbers in parents.values() for n in numbers)

    copy = optuna.create_study(sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0))
    for t in study.get_trials(deepcopy=False):
        copy.add_trial(t)
    _private.optuna_set_parents(copy, parents)
    assert _private.optuna_parents(copy) == parents

    tpe = study_of(optuna.samplers.TPESampler(seed=0))
    assert _private.optuna_generation_key(tpe.sampler) is None and _private.optuna_parents(tpe) == {}


def test_learnable_fake_quantize_rounds_to_the_grid_and_has_gradients():
    import torch

    x = torch.tensor([0.0, 0.26, 0.74, 3.0], requires_grad=True)
    scale = torch.tensor([0.5], requires_grad=True)
    y = _private.learnable_fake_quantize(x, scale, torch.tensor([0.0]), 0, 3, 1.0)
    assert y.tolist() == [0.0, 0.5, 0.5, 1.5]  # round(x / 0.5), clipped to 0..3, times 0.5
    y.sum().backward()
    assert x.grad is not None and scale.grad is not None


def test_timm_block_decoder_builds_block_args():
    decode_arch_def, round_channels = _private.timm_block_decoder()
    (stage,) = decode_arch_def([["ir_r1_k3_s1_e4_c16"]])
    assert stage[0]["dw_kernel_size"] == 3 and stage[0]["exp_ratio"] == 4.0 and stage[0]["out_chs"] == 16
    assert round_channels(32, 0.5) == 16


def test_no_other_module_uses_a_private_dependency_api():
    pattern = r"(\._storage\b|\._study_id\b|torch\._[a-z]|timm\.models\._)"
    found = subprocess.run(
        ["grep", "-rnE", pattern, "--include=*.py", str(PACKAGE)], capture_output=True, text=True, check=False
    ).stdout
    offenders = [line for line in found.splitlines() if not re.match(rf"{re.escape(str(PACKAGE))}/_private\.py:", line)]
    assert not offenders, "private dependency APIs belong in cosearch/_private.py:\n" + "\n".join(offenders)


@pytest.mark.parametrize("module", ["scipy", "ml_dtypes", "onnxscript"])
def test_imported_dependencies_are_declared(module):
    text = (PACKAGE.parent / "pyproject.toml").read_text()
    assert re.search(rf'"{module}>=', text), f"{module} is imported but not declared in pyproject.toml"
