"""A finished run stays readable when the files its job named have moved: only run and resume read them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

pytestmark = pytest.mark.ray


def cosearch(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cosearch.cli.main", *args], capture_output=True, text=True, timeout=timeout
    )


def test_status_pareto_report_and_export_work_after_tables_profiles_and_teacher_moved(tmp_path):
    timm = pytest.importorskip("timm")
    torch = pytest.importorskip("torch")
    files = tmp_path / "files"
    files.mkdir()
    entries = {
        f"(4, 4, 8, 1, 1, 0, 1)-W{w}A{a}": {"latency": 0.001 * w * a, "energy": 0.01 * w * a}
        for w in (4, 8)
        for a in (4, 8)
    }
    (files / "accelerator.json").write_text(json.dumps(entries))
    # A device from a team's profiles file (its table relative to it) and one declared in the job.
    (files / "team.yaml").write_text(
        yaml.safe_dump({"devices": {"npu": {"kind": "analytic", "table": "accelerator.json"}}})
    )
    torch.save(timm.create_model("resnet18", num_classes=10, in_chans=1).state_dict(), files / "teacher.pt")
    job = {
        "name": "moved",
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "compression": {
            "weight_bits": [8, 32],
            "sparsity": [0.0],
            "distill_alpha": [0.0, 0.5],
            "teacher": {"model": "resnet18", "checkpoint": str(files / "teacher.pt")},
        },
        "strategy": {"name": "random"},
        "objectives": ["accuracy", "latency_ms@npu", "energy_mj@board"],
        "devices": {"board": {"kind": "analytic", "table": str(files / "accelerator.json")}},
        "profiles": str(files / "team.yaml"),
        "training": {"epochs": 1, "finetune_epochs": 0},
        "resources": {"trials": 3, "concurrency": 2},
    }
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    run_dir = tmp_path / "run"
    out = cosearch("run", str(tmp_path / "job.yaml"), "--run-dir", str(run_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    files.rename(tmp_path / "elsewhere")  # tables, profiles file and teacher checkpoint all gone

    for command in (["status"], ["pareto", "--all"], ["report"], ["export", "--pick", "1"]):
        out = cosearch(*command, str(run_dir))
        assert out.returncode == 0, f"{command}: {out.stdout + out.stderr}"
    assert (run_dir / "report.html").is_file() and (run_dir / "export-1" / "model.onnx").is_file()

    out = cosearch("resume", str(run_dir))  # resuming reads them again, and says which one is missing
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "teacher.pt" in out.stderr or "team.yaml" in out.stderr or "accelerator.json" in out.stderr

    (tmp_path / "elsewhere").rename(files)
    (files / "teacher.pt").unlink()  # the run stores its teacher's outputs: the checkpoint is not needed again
    out = cosearch("resume", str(run_dir))
    assert out.returncode == 0, out.stdout + out.stderr
