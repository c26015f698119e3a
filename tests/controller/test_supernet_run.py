"""A supernet run: trained once, an epoch per worker task with a checkpoint stored after each; a
run stopped mid-training resumes where it stopped and ends with the same supernet as one never
stopped; a supernet that diverges fails the run with its reason."""

from __future__ import annotations

import io

import pytest

from cosearch.controller import Controller, RunStore
from cosearch.core.errors import RunFailed
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray
torch = pytest.importorskip("torch")


def job(epochs: int = 3, learning_rate: float = 3e-3):
    return spec_from_dict(
        {
            "name": "sn",
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
            "evaluator": {"name": "supernet", "epochs": epochs},
            "strategy": {"name": "random"},
            "objectives": ["accuracy", "size_kb"],
            "training": {"batch_size": 128, "learning_rate": learning_rate},
            "latency": {"warmup_runs": 2, "runs": 30},
            "resources": {"trials": 3, "concurrency": 2, "seed": 0},
        }
    )


def supernet(run_dir):
    with RunStore(run_dir) as store:
        info, checkpoint = store.supernet()
        results = [r.result for r in store.results()]
    return info, torch.load(io.BytesIO(checkpoint), weights_only=False)["model"], results


def test_a_run_stopped_while_its_supernet_trains_resumes_where_it_stopped(ray_local, tmp_path):
    Controller.start(job(), tmp_path / "straight").run()
    info, model, results = supernet(tmp_path / "straight")
    assert info["epochs_done"] == 3 and len(info["losses"]) == 3
    assert len(results) == 3 and all(r.ok for r in results), [r.error for r in results]
    assert all(r.measured["training"]["how"].startswith("inherited") for r in results)

    def stop_at_epoch_3(state):
        if state.note.startswith("training the supernet: epoch 3 of 3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Controller.start(job(), tmp_path / "stopped", listener=stop_at_epoch_3).run()
    with RunStore(tmp_path / "stopped") as store:
        assert store.supernet()[0]["epochs_done"] == 2 and not store.results()
    notes = []
    Controller.resume(tmp_path / "stopped", listener=lambda state: notes.append(state.note)).run()
    resumed_info, resumed_model, resumed_results = supernet(tmp_path / "stopped")
    shown = [n for n in dict.fromkeys(notes) if n]  # only the epoch not stored is trained
    assert len(shown) == 1 and shown[0].startswith(
        f"training the supernet: epoch 3 of 3, loss {info['losses'][1]:.3f}, ETA"
    )
    assert resumed_info["losses"] == info["losses"]
    assert all(torch.equal(model[k], resumed_model[k]) for k in model)
    keys = sorted(r.candidate.key for r in results)
    assert sorted(r.candidate.key for r in resumed_results) == keys

    Controller.resume(tmp_path / "stopped").run()  # finished: the stored supernet is not trained again
    assert supernet(tmp_path / "stopped")[0] == resumed_info


def test_a_supernet_that_diverges_fails_the_run_with_its_reason(ray_local, tmp_path):
    with pytest.raises(RunFailed, match="supernet training diverged: the loss became nan in epoch 1"):
        Controller.start(job(learning_rate=1e30), tmp_path / "run").run()
    with RunStore(tmp_path / "run") as store:
        status = store.status()
        assert status["state"] == "failed" and "lower training.learning_rate" in status["reason"]
        assert store.supernet() is None and not store.results()
