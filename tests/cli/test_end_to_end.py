"""The user's path on real digits data, through the real CLI in subprocesses with local Ray."""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from cosearch.controller import RunStore

pytestmark = pytest.mark.ray

TINY_JOB = {
    "name": "tiny",
    "task": {"dataset": "digits"},
    "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
    "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5], "channel_ratio": [0.0, 0.5]},
    "strategy": {"name": "regularized_evolution", "population_size": 4, "sample_size": 2},
    "objectives": ["accuracy", "latency_ms", "size_kb"],
    "budgets": ["size_kb <= 400"],
    "training": {"epochs": 2, "finetune_epochs": 1},
    "latency": {"warmup_runs": 5, "runs": 30},
    "resources": {"trials": 6, "concurrency": 2, "seed": 0},
}


def cosearch(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cosearch.cli.main", *args], capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    job = root / "job.yaml"
    job.write_text(yaml.safe_dump(TINY_JOB))
    out = cosearch("run", str(job), "--run-dir", str(root / "run"))
    assert out.returncode == 0, out.stdout + out.stderr
    return root / "run", out.stdout


def test_run_prints_progress_pareto_and_run_dir(finished_run, run_rows):
    run_dir, stdout = finished_run
    assert "[6/6]" in stdout and "feasible" in stdout and "ETA" in stdout
    assert "Pareto set" in stdout
    assert f"run directory: {run_dir}" in stdout
    assert (run_dir / "report.html").is_file() and "report:" in stdout
    assert len(run_rows(run_dir)) == 6


def test_pareto_and_status_commands(finished_run):
    run_dir, _ = finished_run
    out = cosearch("pareto", str(run_dir))
    assert out.returncode == 0 and "accuracy" in out.stdout and "size_kb" in out.stdout and "sparsity" in out.stdout
    every = cosearch("pareto", str(run_dir), "--all")
    assert every.returncode == 0 and "status" in every.stdout
    status = cosearch("status", str(run_dir))
    assert status.returncode == 0 and "finished" in status.stdout and "evaluated 6/6" in status.stdout


def test_export_runs_in_onnx_runtime_and_agrees_with_pytorch(finished_run, tmp_path):
    import onnxruntime as ort

    from cosearch.controller import RunStore
    from cosearch.evaluators.train import accuracy, predict
    from cosearch.export import load_model
    from cosearch.report import pareto_ids

    run_dir, _ = finished_run
    with RunStore(run_dir) as store:
        job_goals = __import__("cosearch.job", fromlist=["spec_from_dict"]).spec_from_dict(store.job()).goals()
        pick = pareto_ids(store.results(), job_goals)[0]
        model, stored, _, data = load_model(store, pick)
    out = cosearch("export", str(run_dir), "--pick", str(pick), "--out", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    session = ort.InferenceSession(str(tmp_path / "exp" / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = session.run(None, {"input": data.val.x})[0]
    torch_logits = predict(model, data.val.x)
    np.testing.assert_allclose(onnx_logits, torch_logits, atol=1e-4, rtol=1e-4)
    # The reloaded PyTorch model is the one whose accuracy the search reported.
    assert accuracy(torch_logits, data.val.y) == pytest.approx(stored.result.metrics["accuracy"])
    card = json.loads((tmp_path / "exp" / "card.json").read_text())
    assert card["id"] == pick and card["arch"] == dict(stored.result.candidate.arch)
    assert card["policy"] == stored.result.candidate.policy.to_json()
    assert card["export"]["onnx_accuracy"]["val"] == pytest.approx(stored.result.metrics["accuracy"])
    latency = card["export"]["latency_ms"]
    assert latency["threads"] == 1 and latency["runs"] >= 30 and latency["median_ms"] > 0
    assert card["search_measured"]["accuracy"]["split"] == "val"


def test_export_best_under_rules_says_which_and_why(finished_run, tmp_path):
    run_dir, _ = finished_run
    with RunStore(run_dir) as store:
        ok = [r for r in store.results() if r.result.ok]
    bound = float(f"{sorted(r.result.metrics['size_kb'] for r in ok)[len(ok) // 2]:.4g}")  # about half meet it
    meeting = [r for r in ok if r.result.metrics["size_kb"] <= bound]
    expected = max(meeting, key=lambda r: (r.result.metrics["accuracy"], -r.id))
    rule = f"size_kb <= {bound:g}"
    out = cosearch("export", str(run_dir), "--best", "accuracy", "--where", rule, "--out", str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    assert f"picked #{expected.id}: the highest accuracy" in out.stdout and rule in out.stdout
    assert json.loads((tmp_path / "exp" / "card.json").read_text())["id"] == expected.id


def test_export_finetune_keeps_the_compression_and_reports_test_accuracy(finished_run, tmp_path):
    import torch

    from cosearch.evaluators.train import accuracy, predict
    from cosearch.export import load_model
    from cosearch.export.finetune import finetune

    run_dir, _ = finished_run
    with RunStore(run_dir) as store:
        pick = next(r for r in store.results() if r.result.ok and r.result.candidate.policy.summary().count("w4"))
        model, stored, job, data = load_model(store, pick.id)
        tuned, record = finetune(model, stored, job, data, store, epochs=1)
    assert record["epochs"] == 1 and not record["distilled"]
    assert record["images"] == len(data.train.y) + len(data.val.y)
    from cosearch.compressors import layers_of_slot

    before, after = dict(model.named_parameters()), dict(tuned.named_parameters())
    sparsity = {
        f"{name}.weight": layer.sparsity
        for slot, layer in stored.result.candidate.policy.layers.items()
        for name in layers_of_slot(model, slot)
    }
    moved = False
    for name, weight in before.items():
        if weight.dim() < 2:
            continue
        new = after[name]
        pruned = round(sparsity.get(name, 0.0) * weight.numel())  # the mask's zeros stay zero
        assert int(((weight == 0) & (new == 0)).sum()) >= pruned, f"{name}: pruned weights revived"
        moved |= not torch.equal(weight, new)

        def levels(w):
            return max(len(torch.unique(row)) for row in w.detach().reshape(w.shape[0], -1))

        if levels(weight) <= 16:  # a 4-bit layer (zero and up to 15 levels per channel) stays one
            assert levels(new) <= 16, f"{name}: off its quantization grid"
    assert moved  # it did train
    out = cosearch("export", str(run_dir), "--pick", str(pick.id), "--finetune", "1", "--out", str(tmp_path / "ft"))
    assert out.returncode == 0, out.stderr
    assert "fine-tuned 1 epochs" in out.stdout and "test accuracy" in out.stdout
    card = json.loads((tmp_path / "ft" / "card.json").read_text())
    assert card["finetune"]["test_accuracy_before"] == pytest.approx(accuracy(predict(model, data.test.x), data.test.y))


def test_export_of_unknown_id_is_a_clear_error(finished_run, tmp_path):
    run_dir, _ = finished_run
    out = cosearch("export", str(run_dir), "--pick", "999", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "no result with id 999" in out.stderr and "Traceback" not in out.stderr


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path, sessions, run_rows):
    job = dict(TINY_JOB, resources={"trials": 8, "concurrency": 2, "seed": 1})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    run_dir = tmp_path / "run"
    driver = subprocess.Popen(
        [sys.executable, "-m", "cosearch.cli.main", "run", str(tmp_path / "job.yaml"), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if len(run_rows(run_dir)) >= 3:
                break
            assert driver.poll() is None, "the run ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no 3 results within the deadline")
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        sessions.kill(driver.pid)
    before = run_rows(run_dir)
    assert 3 <= len(before) < 8
    out = cosearch("resume", str(run_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    after = run_rows(run_dir)
    assert after[: len(before)] == before  # nothing lost or rewritten
    assert [row[0] for row in after] == list(range(1, 9))  # exactly the trials asked for
    assert len({row[1] for row in after}) == 8  # nothing evaluated twice
    time.sleep(1.0)
    assert sessions.pids(driver.pid) == []  # nothing of the killed run outlives the test


def _can_mount_read_only() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind / /mnt"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_read_only(), reason="needs `unshare -m` and mount (root) for a read-only bind mount")
def test_a_finished_run_on_read_only_storage_can_be_read_and_exported(finished_run, tmp_path):
    """SQLite's WAL mode wants to create side files beside the database, which read-only storage
    forbids: the read commands open it immutable there."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run[0], run_dir, ignore=shutil.ignore_patterns("driver.lock", "*-wal", "*-shm"))
    with RunStore(run_dir) as store:
        pick = next(r.id for r in store.results() if r.result.status == "ok")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    cli = f"{shlex.quote(sys.executable)} -m cosearch.cli.main"
    r = shlex.quote(str(run_dir))
    script = f"""set -e
mount --bind {r} {r} && mount -o remount,bind,ro {r}
! touch {r}/probe 2>/dev/null
{cli} status {r}; echo "status=$?"
{cli} pareto {r}; echo "pareto=$?"
{cli} report {r} --out {shlex.quote(str(tmp_path / "report.html"))}; echo "report=$?"
{cli} export {r} --pick {pick} --out {shlex.quote(str(tmp_path / "exp"))}; echo "export=$?"
{cli} resume {r} || echo "resume=$?"
"""
    out = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    for command in ("status", "pareto", "report", "export"):
        assert f"{command}=0" in out.stdout, out.stdout + out.stderr
    assert "finished" in out.stdout and "Traceback" not in out.stderr
    assert "resume=2" in out.stdout and "cannot create driver.lock" in out.stderr and "Read-only" in out.stderr
    assert (tmp_path / "report.html").is_file() and (tmp_path / "exp" / "model.onnx").is_file()
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
