"""The enas strategy: its shared-weight work, what it asks once that is handed back, the search itself."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosearch.core import Constraint, Goals, Objective, SpecError
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.strategies import STRATEGIES
from cosearch.strategies.enas import KEY

SPACE = SEARCH_SPACES.create("enas", channels=4, layers=4)
JOINT = JointSpace(SPACE, weight_bits=[4, 8, 32], sparsity=[0.0, 0.5])
GOALS = Goals((Objective.parse("accuracy"),), (Constraint.parse("size_kb <= 20"),))


def test_one_shared_weight_search_then_its_best_candidates_then_the_trained_controller():
    strategy = STRATEGIES.create("enas", JOINT, GOALS, seed=1, epochs=2, samples=3, top_k=2)
    (work,) = strategy.work()
    assert work.key == KEY and work.function == "cosearch.strategies._enas_torch:search"
    assert work.args["options"]["weight_bits"] == [4, 8, 32] and work.args["budgets"] == ["size_kb <= 20"]
    rng = np.random.default_rng(0)
    best = [JOINT.sample(rng) for _ in range(2)]
    trained = STRATEGIES.create("reinforce", JOINT, GOALS, seed=1)
    trained.weights[0] += 3.0  # a controller that learnt something
    strategy.worked(KEY, {"controller": json.loads(json.dumps(trained.state_dict())), "best": best})
    assert strategy.work() == []
    assert [strategy.ask().key for _ in range(2)] == [JOINT.decode(g).key for g in best]
    assert np.allclose(strategy.then.weights[0], trained.weights[0])
    state = json.loads(json.dumps(strategy.state_dict()))
    again = STRATEGIES.create("enas", JOINT, GOALS, seed=7)
    again.load_state_dict(state)
    assert again.work() == [] and again.ask().key == strategy.ask().key


def test_a_space_without_a_supernet_is_refused():
    pytest.importorskip("timm")
    resnet = JointSpace(SEARCH_SPACES.create("timm", model="resnet18"))
    with pytest.raises(SpecError, match=r"strategy: .*supernet"):
        STRATEGIES.create("enas", resnet, GOALS, seed=0)


def test_the_search_trains_the_controller_on_shared_weights_and_keeps_its_best():
    pytest.importorskip("torch")
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._enas_torch import search

    job = spec_from_dict(
        {
            "search_space": {"name": "enas", "channels": 4, "layers": 4},
            "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
            "strategy": {"name": "enas"},
            "objectives": ["accuracy", "size_kb"],
            "budgets": ["size_kb <= 20"],
        }
    )
    strategy = STRATEGIES.create("enas", JOINT, GOALS, seed=0, epochs=2, samples=4, top_k=3)
    (work,) = strategy.work()
    out = search(build.make_evaluator(job), **work.args)
    assert len(out["best"]) == 3 and all(JOINT.contains(JOINT.decode(g)) for g in out["best"])
    assert out["best_rewards"] == sorted(out["best_rewards"], reverse=True)
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert 0.0 <= out["history"][-1]["shared_accuracy_mean"] <= 1.0
    initial = STRATEGIES.create("reinforce", JOINT, GOALS, seed=0)
    moved = [np.array(w) for w in out["controller"]["weights"]]
    assert any(not np.allclose(a, b) for a, b in zip(moved, initial.weights))  # REINFORCE stepped
    assert out["controller"]["asked_tokens"] == {}  # every rewarded sample told, trained-on ones dropped


def test_the_search_runs_on_the_elastic_mobilenet_supernet():
    """The elastic supernet's slices, compressed and with inputs at the sampled bits, train and reward."""
    pytest.importorskip("torch")
    from cosearch import build
    from cosearch.job import spec_from_dict
    from cosearch.strategies._enas_torch import search

    shape = {"stage_channels": [8, 16], "stage_strides": [1, 2], "depths": [1, 2], "head_channels": 16}
    compression = {"weight_bits": [4, 32], "activation_bits": [8, 32]}
    job = spec_from_dict(
        {
            "search_space": {"name": "mobilenet", **shape},
            "compression": compression,
            "strategy": {"name": "enas"},
            "objectives": ["accuracy", "size_kb"],
            "budgets": ["size_kb <= 50"],
        }
    )
    joint = JointSpace(SEARCH_SPACES.create("mobilenet", **shape), **compression)
    strategy = STRATEGIES.create("enas", joint, GOALS, seed=0, epochs=1, samples=2, top_k=2)
    (work,) = strategy.work()
    out = search(build.make_evaluator(job), **work.args)
    assert len(out["best"]) == 2 and all(joint.contains(joint.decode(g)) for g in out["best"])
    assert np.isfinite(out["history"][0]["shared_loss"])
