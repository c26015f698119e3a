from __future__ import annotations

import dataclasses
import math
from typing import Annotated

import pytest
from pydantic import Field

from cosearch.core import Candidate, Constraint, Goals, LayerPolicy, Objective, Policy, Registry, Result, SpecError


def test_candidate_key_is_stable_and_order_free():
    a = Candidate(
        {"cell": "x", "b": 1},
        Policy({"l1": LayerPolicy(weight_bits=8, sparsity=0.5), "l0": LayerPolicy(weight_bits=4)}),
    )
    b = Candidate(
        {"b": 1, "cell": "x"},
        Policy({"l0": LayerPolicy(weight_bits=4), "l1": LayerPolicy(weight_bits=8, sparsity=0.5)}),
    )
    assert a.key == b.key and a == b
    assert Candidate.from_json(a.to_json()).key == a.key
    assert Candidate({"cell": "y"}).key != a.key


def test_candidate_is_frozen():
    candidate = Candidate({"cell": "x"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        candidate.arch = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        candidate.arch["cell"] = "y"  # type: ignore[index]


@pytest.mark.parametrize("bits", [1, 3.5, 9, 16, 64, True])
def test_layer_policy_rejects_bits(bits):
    with pytest.raises(ValueError, match="weight_bits"):
        LayerPolicy(weight_bits=bits)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.2])
def test_layer_policy_rejects_sparsity(sparsity):
    with pytest.raises(ValueError, match="sparsity"):
        LayerPolicy(sparsity=sparsity)


def test_policy_summary():
    policy = Policy({"a": LayerPolicy(weight_bits=4, sparsity=0.5), "b": LayerPolicy(weight_bits=32, sparsity=0.0)})
    assert policy.summary() == "w4x1 fpx1; sparsity 0.25"
    assert Policy({}).summary() == "float, dense"  # a network with no compressible layers
    assert Policy({}, distill_alpha=0.5, channel_ratio=0.25).summary() == "float, dense; distill 0.5; channels -25%"


def test_result_round_trip_and_failed():
    candidate = Candidate({"cell": "x"})
    result = Result(candidate, "ok", {"accuracy": 0.9}, timings_s={"total_s": 1.0})
    assert Result.from_json(result.to_json()) == result
    failed = Result.failed(candidate, "boom")
    assert failed.status == "failed" and failed.error == "boom"
    with pytest.raises(ValueError):
        Result(candidate, "ok", {"accuracy": math.nan})
    with pytest.raises(ValueError):
        Result(candidate, "weird")  # type: ignore[arg-type]


def test_goals_vectors_and_violation():
    goals = Goals(
        (Objective.parse("accuracy"), Objective.parse("latency_ms")),
        (Constraint.parse("latency_ms <= 2.0"), Constraint.parse("accuracy >= 0.5")),
    )
    candidate = Candidate({"cell": "x"})
    ok = Result(candidate, "ok", {"accuracy": 0.8, "latency_ms@local-cpu": 3.0})
    assert list(goals.minimization_vector(ok)) == [-0.8, 3.0]
    assert goals.violation(ok) == pytest.approx(0.5)
    assert not goals.feasible(ok)
    assert math.isinf(goals.violation(Result.failed(candidate, "x")))


@pytest.mark.parametrize(
    "text, field_fragment",
    [
        ("latency_ms < 2", "budgets"),
        ("speed <= 2", "budgets"),
        ("size_kb <= -1", "budgets"),
        ("accuracy >= 2", "budgets"),
    ],
)
def test_constraint_parse_errors(text, field_fragment):
    with pytest.raises(SpecError, match=field_fragment):
        Constraint.parse(text)


def test_metric_names_resolve_devices():
    assert Constraint.parse("latency_ms <= 1").metric == "latency_ms@local-cpu"
    assert Constraint.parse("latency_ms@rpi4 <= 1").metric == "latency_ms@rpi4"
    with pytest.raises(SpecError, match="does not depend on a device"):
        Objective.parse("size_kb@rpi4")


def test_registry_duplicate_and_unknown():
    registry: Registry = Registry("widget")

    @registry.register("a")
    def make_a(size: int = 1):
        return size

    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(make_a)
    with pytest.raises(SpecError, match=r"one of \['a'\]"):
        registry.get("b")
    with pytest.raises(SpecError, match="size"):
        registry.check_params("a", {"colour": 1}, "widget")
    assert registry.create("a", size=3) == 3


WIDGETS: Registry = Registry("widget")


@WIDGETS.register("w")
def widget(size: Annotated[int, Field(ge=2)] = 4, share: Annotated[float, Field(ge=0, lt=1)] | None = None):
    return size, share


def test_registry_checks_the_ranges_a_signature_declares():
    assert WIDGETS.create("w", size=2, share=None) == (2, None)
    assert WIDGETS.create("w", share=0.5) == (4, 0.5)
    with pytest.raises(ValueError, match=r"`size >= 2` must hold, but got size=1"):
        WIDGETS.create("w", size=1)
    with pytest.raises(ValueError, match=r"`0 <= share < 1` must hold, but got share=1.0"):
        WIDGETS.create("w", share=1.0)
    with pytest.raises(ValueError, match=r"`size >= 2` must hold, but got size=True"):
        WIDGETS.create("w", size=True)  # a bool is no int
