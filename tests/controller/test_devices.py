"""Several devices in one job: a measured device routed by a Ray resource, a lookup table and an
accelerator model; the Pareto set per device; `cosearch profile` writing the table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cosearch import build
from cosearch.cli.main import main
from cosearch.controller import Controller, RunStore
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray

SPACE = {"name": "nb201", "channels": 4, "cells_per_stage": 1}


def accelerator_table(path: Path) -> Path:
    entries = {
        f"(4, 4, 8, 1, 1, 0, 1)-W{w}A{a}": {"latency": 0.001 * w * a, "energy": 0.01 * w * a}
        for w in (4, 8)
        for a in (4, 8)
    }
    path.write_text(json.dumps(entries))
    return path


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    """A table of the tiny space, written by the CLI as a user would."""
    folder = tmp_path_factory.mktemp("lut")
    (folder / "job.yaml").write_text(
        yaml.safe_dump({"search_space": SPACE, "compression": {"weight_bits": [32], "sparsity": [0.0]}})
    )
    out = folder / "lut.json"
    code = main(
        [
            "profile",
            "--job",
            str(folder / "job.yaml"),
            "--out",
            str(out),
            "--max-networks",
            "60",
            "--patience",
            "60",
            "--calibration",
            "4",
        ]
    )
    assert code == 0 and out.is_file()
    return out


def test_profile_rejects_a_device_it_cannot_measure(tmp_path, capsys):
    assert main(["profile", "--device", "rpi9", "--out", str(tmp_path / "x.json")]) == 2
    assert "rpi9" in capsys.readouterr().err and not (tmp_path / "x.json").exists()


def test_one_job_costs_every_device_and_routes_measurement_to_the_device_node(ray_local, tmp_path, lut, capsys):
    job = spec_from_dict(
        {
            "name": "devices",
            "search_space": SPACE,
            "compression": {"weight_bits": [4, 8], "sparsity": [0.0]},
            "strategy": {"name": "random"},
            "devices": {
                "board": {"kind": "measured", "resource": "device:test-board", "warmup_runs": 2, "runs": 30},
                "board-lut": {"kind": "lut", "table": str(lut)},
                "accel": {"kind": "analytic", "table": str(accelerator_table(tmp_path / "accel.json"))},
            },
            "objectives": ["accuracy", "latency_ms@board", "energy_mj@accel"],
            "budgets": ["latency_ms@board-lut <= 100", "bitops <= 1e12"],
            "training": {"epochs": 1, "finetune_epochs": 0},
            "resources": {"trials": 3, "concurrency": 2},
        }
    )
    Controller.start(job, tmp_path / "run").run()
    with RunStore(tmp_path / "run") as store:
        results = [r.result for r in store.results()]
    assert [r.status for r in results] == ["ok"] * 3, [r.error for r in results]
    for result in results:
        assert {
            "accuracy",
            "size_kb",
            "bitops",
            "latency_ms@board",
            "latency_ms@board-lut",
            "latency_ms@accel",
            "energy_mj@accel",
        } <= set(result.metrics)
        assert "latency_ms@local-cpu" not in result.metrics  # not named by the job: not measured
        assert result.measured["latency_ms@board"]["node_id"]  # measured by a task on the device's node
        assert result.measured["latency_ms@board-lut"]["how"].startswith("predicted")
        assert 0 <= result.measured["energy_mj@accel"]["layers_in_table"] <= 1
    assert main(["pareto", str(tmp_path / "run"), "--device", "accel"]) == 0
    out = capsys.readouterr().out
    assert "@accel" in out and "@board" not in out  # the set for one device leaves the others out
    assert main(["pareto", str(tmp_path / "run"), "--budget", "bitops <= 1"]) == 0
    assert "no result meets every budget" in capsys.readouterr().out
    assert main(["pareto", str(tmp_path / "run"), "--device", "rpi9"]) == 2
    assert "rpi9" in capsys.readouterr().err


def test_profiles_file_declares_devices_for_many_jobs(tmp_path, lut):
    shared = tmp_path / "team"
    shared.mkdir()
    (shared / "lut.json").write_text(Path(lut).read_text())
    (shared / "profiles.yaml").write_text(yaml.safe_dump({"devices": {"phone": {"kind": "lut", "table": "lut.json"}}}))
    job = spec_from_dict(
        {"search_space": SPACE, "profiles": str(shared / "profiles.yaml"), "budgets": ["latency_ms@phone <= 5"]}
    )
    phone = build.device_profiles(job)["phone"]
    assert phone.kind == "lut" and Path(phone.table) == shared / "lut.json"  # relative to the profiles file
    assert "latency_ms@phone" in build.make_evaluator(job).provides()
