"""The table evaluator on a small generated table (the real NAS-Bench-201 table is not needed)."""

from __future__ import annotations

import csv
import gzip
import itertools

import numpy as np
import pytest

from cosearch import build
from cosearch.core import Candidate, SpecError
from cosearch.evaluators.table import TableEvaluator
from cosearch.job import spec_from_dict
from cosearch.search_spaces import SEARCH_SPACES, JointSpace
from cosearch.search_spaces.nb201 import EDGES, OPS, format_arch_str

SPACE = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)


def write_table(path, gz: bool = True) -> dict[str, tuple[float, float]]:
    """Every NB201 cell with a made-up accuracy (percent) and latency: more convs, more of both."""
    rows = {}
    for ops in itertools.product(OPS, repeat=6):
        arch = format_arch_str(dict(zip(EDGES, ops)))
        convs = sum(op.startswith("nor_conv") for op in ops)
        rows[arch] = (60.0 + 5.0 * convs, 1.0 + 0.5 * convs)
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["arch_idx", "arch_str", "c10_test_200ep", "lat_rpi4"])
        for i, (arch, (acc, lat)) in enumerate(rows.items()):
            writer.writerow([i, arch, acc, lat])
    return rows


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    path = tmp_path_factory.mktemp("table") / "tiny.csv.gz"
    return path, write_table(path)


def test_lookup_scales_percent_and_names_the_device(table):
    path, rows = table
    evaluator = TableEvaluator(SPACE, str(path), {"accuracy": "c10_test_200ep", "latency_ms@rpi4": "lat_rpi4"})
    assert evaluator.provides() == {"accuracy", "latency_ms@rpi4"}
    candidate = JointSpace(SPACE, weight_bits=(32,), sparsity=(0.0,)).decode(
        JointSpace(SPACE, weight_bits=(32,), sparsity=(0.0,)).sample(np.random.default_rng(0))
    )
    result = evaluator.evaluate(candidate).result
    accuracy, latency = rows[candidate.arch["cell"]]
    assert result.metrics == {"accuracy": pytest.approx(accuracy / 100), "latency_ms@rpi4": pytest.approx(latency)}
    assert result.measured["accuracy"]["column"] == "c10_test_200ep"


def test_noise_is_seeded(table):
    path, _ = table
    metrics = {"accuracy": "c10_test_200ep"}
    candidate = Candidate({"cell": "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|"})
    a = TableEvaluator(SPACE, str(path), metrics, noise_std=0.01, seed=1).evaluate(candidate).result.metrics["accuracy"]
    b = TableEvaluator(SPACE, str(path), metrics, noise_std=0.01, seed=1).evaluate(candidate).result.metrics["accuracy"]
    c = TableEvaluator(SPACE, str(path), metrics, noise_std=0.01, seed=2).evaluate(candidate).result.metrics["accuracy"]
    assert a == b != c


def test_unknown_architecture_is_a_failed_result(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("arch_str,acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,50\n")
    result = (
        TableEvaluator(SPACE, str(path), {"accuracy": "acc"})
        .evaluate(Candidate({"cell": "|skip_connect~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|"}))
        .result
    )
    assert result.status == "failed" and "not in" in result.error


@pytest.mark.parametrize(
    "params, fragment",
    [
        ({"path": "/nope.csv", "metrics": {"accuracy": "c10_test_200ep"}}, "evaluator.path"),
        ({"metrics": {"accuracy": "no_such_column"}}, "evaluator.metrics.accuracy"),
        ({"metrics": {"flops": "lat_rpi4"}}, "flops"),
        ({"metrics": {"accuracy": "c10_test_200ep"}, "key_column": "idx"}, "evaluator.key_column"),
        ({"metrics": {}}, "evaluator.metrics"),
    ],
)
def test_bad_table_settings(table, params, fragment):
    path, _ = table
    with pytest.raises(SpecError, match=fragment):
        TableEvaluator(SPACE, **{"path": str(path), **params})


def job(path, **changes):
    data = {
        "name": "table",
        "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
        "compression": {"weight_bits": [32], "sparsity": [0.0]},
        "strategy": {"name": "nsga2", "population_size": 8},
        "evaluator": {
            "name": "table",
            "path": str(path),
            "metrics": {"accuracy": "c10_test_200ep", "latency_ms@rpi4": "lat_rpi4"},
        },
        "objectives": ["accuracy", "latency_ms@rpi4"],
        "budgets": ["latency_ms@rpi4 <= 2.5"],
        "resources": {"trials": 40, "concurrency": 2},
    }
    data.update(changes)
    return build.check(spec_from_dict(data))  # the table's columns are read by check, not by the schema


def test_job_checks_metrics_and_compression_against_the_table(table):
    path, _ = table
    with pytest.raises(SpecError, match=r"objectives\[1\].*provides"):
        job(path, objectives=["accuracy", "latency_ms"])
    with pytest.raises(SpecError, match=r"budgets\[0\]"):
        job(path, budgets=["size_kb <= 3"])
    with pytest.raises(SpecError, match="compression"):
        job(path, compression={"weight_bits": [8, 32], "sparsity": [0.0]})


@pytest.mark.ray
def test_whole_search_through_the_controller(ray_local, table, tmp_path):
    from cosearch.controller import Controller, RunStore
    from cosearch.report import pareto_ids

    path, rows = table
    spec = job(path)
    state = Controller.start(spec, tmp_path / "run").run()
    assert state.finished and state.evaluated == 40 and state.failed == 0
    with RunStore(tmp_path / "run") as store:
        results = store.results()
    front = pareto_ids(results, spec.goals())
    assert front and all(spec.goals().feasible(r.result) for r in results if r.id in front)
    best = max(acc for acc, lat in rows.values() if lat <= 2.5) / 100
    found = max(r.result.metrics["accuracy"] for r in results if spec.goals().feasible(r.result))
    assert found == pytest.approx(best)  # 2 convs within budget is easy to find in 40 tries
