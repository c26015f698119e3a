"""The controller on local Ray with the synthetic evaluator: exact counts, failures, resume."""

from __future__ import annotations

import io

import numpy as np
import pytest

from cosearch import build
from cosearch.controller import Controller, RunStore
from cosearch.core import CosearchError
from cosearch.job import spec_from_dict
from cosearch.strategies import Strategy

pytestmark = pytest.mark.ray


def job(trials: int = 12, fail_rate: float = 0.3, strategy: str = "regularized_evolution"):
    params = {"population_size": 4, "sample_size": 2} if strategy == "regularized_evolution" else {}
    return spec_from_dict(
        {
            "name": "t",
            "search_space": {"name": "nb201", "channels": 8, "cells_per_stage": 1},
            "strategy": {"name": strategy, **params},
            "evaluator": {"name": "synthetic", "fail_rate": fail_rate, "delay_s": 0.02},
            "budgets": ["latency_ms <= 1.2"],
            "resources": {"trials": trials, "concurrency": 2, "seed": 0},
        }
    )


def stored(run_dir):
    with RunStore(run_dir) as store:
        return [(r.id, r.result.candidate.key, r.result.to_json()) for r in store.results()], store.status()["state"]


def test_run_stores_exactly_the_trials_and_keeps_going_past_failures(ray_local, tmp_path):
    # Random search asks the same candidates whatever order results come back in, so the
    # injected failures (a function of each candidate) are the same on every run.
    state = Controller.start(job(fail_rate=0.5, strategy="random"), tmp_path / "run").run()
    rows, status = stored(tmp_path / "run")
    assert status == "finished" and state.finished
    assert [r[0] for r in rows] == list(range(1, 13))
    assert len({r[1] for r in rows}) == 12
    assert 0 < sum(r[2]["status"] == "failed" for r in rows) < 12
    assert all(r[2]["error"] for r in rows if r[2]["status"] == "failed")


def test_each_run_is_evaluated_by_its_own_evaluator(ray_local, tmp_path):
    # Workers keep the run's evaluator between tasks; a second run in the same Ray session
    # must not be answered by the first run's evaluator.
    Controller.start(job(trials=6, fail_rate=0.0, strategy="random"), tmp_path / "ok").run()
    Controller.start(job(trials=6, fail_rate=1.0, strategy="random"), tmp_path / "fail").run()
    assert {r[2]["status"] for r in stored(tmp_path / "ok")[0]} == {"ok"}
    assert {r[2]["status"] for r in stored(tmp_path / "fail")[0]} == {"failed"}


@pytest.mark.parametrize("strategy", ["random", "regularized_evolution"])
def test_interrupted_run_resumes_with_nothing_lost_or_doubled(ray_local, tmp_path, strategy, stop_after):
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Controller.start(job(strategy=strategy), run_dir, listener=stop_after(5)).run()
    before, status = stored(run_dir)
    assert status == "stopped" and 5 <= len(before) < 12
    Controller.resume(run_dir).run()
    after, status = stored(run_dir)
    assert status == "finished"
    assert after[: len(before)] == before  # nothing rewritten
    assert [r[0] for r in after] == list(range(1, 13))
    assert len({r[1] for r in after}) == 12


def test_resume_tells_results_the_checkpoint_missed(ray_local, tmp_path):
    """A kill between storing a result and checkpointing: the stored result is replayed, not redone."""
    run_dir = tmp_path / "run"
    early = {}

    def listener(state):
        if state.evaluated == 3 and not early:
            with RunStore(run_dir) as store:
                early["checkpoint"] = store.checkpoint()
        if state.evaluated >= 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Controller.start(job(), run_dir, listener=listener).run()
    with RunStore(run_dir, write=True) as store:
        store.save_checkpoint(early["checkpoint"])  # as if the driver died right after result 3's checkpoint
    controller = Controller.resume(run_dir)
    assert controller.told_id >= 7  # results 4..7 were told from the store
    controller.run()
    rows, _ = stored(run_dir)
    assert [r[0] for r in rows] == list(range(1, 13)) and len({r[1] for r in rows}) == 12


def test_resume_of_a_finished_run_does_nothing(ray_local, tmp_path):
    Controller.start(job(trials=4, fail_rate=0.0), tmp_path / "run").run()
    before, _ = stored(tmp_path / "run")
    Controller.resume(tmp_path / "run").run()
    assert stored(tmp_path / "run")[0] == before


@pytest.mark.parametrize("strategy", ["regularized_evolution", "optuna:tpe", "gp"])
def test_a_finished_run_extended_goes_on_as_if_it_had_asked_for_more(ray_local, tmp_path, strategy):
    # One evaluation at a time, so the strategy hears results in one order: a run of 6 extended
    # to 10 asks what a run of 10 asks, which it can only do from the strategy state it stopped in.
    def one_at_a_time(trials):
        spec = job(trials=trials, fail_rate=0.2, strategy=strategy)
        return spec.model_copy(update={"resources": spec.resources.model_copy(update={"concurrency": 1})})

    Controller.start(one_at_a_time(10), tmp_path / "straight").run()
    Controller.start(one_at_a_time(6), tmp_path / "extended").run()
    with pytest.raises(CosearchError, match="below the 6 results"):
        Controller.resume(tmp_path / "extended", trials=5)
    state = Controller.resume(tmp_path / "extended", trials=10).run()
    extended, status = stored(tmp_path / "extended")
    straight, _ = stored(tmp_path / "straight")
    assert status == "finished" and state.finished and state.total == 10
    assert [r[1] for r in extended] == [r[1] for r in straight]
    with RunStore(tmp_path / "extended") as store:
        assert store.job()["resources"]["trials"] == 10


def test_start_refuses_an_existing_run(ray_local, tmp_path):
    from cosearch.core import CosearchError

    Controller.start(job(trials=2, fail_rate=0.0), tmp_path / "run").run()
    with pytest.raises(CosearchError, match="resume"):
        Controller.start(job(trials=2), tmp_path / "run")


def test_teacher_is_prepared_once_and_used(ray_local, tmp_path):
    pytest.importorskip("timm")
    spec = spec_from_dict(
        {
            "name": "kd",
            "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
            "compression": {
                "weight_bits": [8, 32],
                "sparsity": [0.0],
                "distill_alpha": [0.5],
                "teacher": {"model": "mobilenetv3_small_050", "epochs": 1},
            },
            "strategy": {"name": "random"},
            "training": {"epochs": 1, "finetune_epochs": 0, "shift_px": 1},
            "latency": {"warmup_runs": 2, "runs": 30},
            "resources": {"trials": 2, "concurrency": 2},
        }
    )
    run_dir = tmp_path / "run"
    Controller.start(spec, run_dir).run()
    with RunStore(run_dir) as store:
        info, logits = store.teacher()
        results = store.results()
    assert (
        info["model"] == "mobilenetv3_small_050"
        and "trained 1 epochs" in info["how"]
        and "shifts up to 1 px" in info["how"]
    )
    assert np.load(io.BytesIO(logits)).shape == (
        9 * len(build.data_settings(spec).load().train.y),
        10,
    )  # one row per shifted view
    assert all(r.result.ok and r.result.candidate.policy.distill_alpha == 0.5 for r in results)
    resumed = Controller.resume(run_dir)
    resumed.run()
    with RunStore(run_dir) as store:
        assert store.teacher()[0] == info  # not trained again
    from cosearch.export import export

    # export --finetune of a distilling pick: the teacher rebuilt from the run gives soft labels
    card = export(run_dir, results[0].id, tmp_path / "tuned", finetune_epochs=1)
    assert card["finetune"]["distilled"] and card["finetune"]["images"] == 9 * (
        len(build.data_settings(spec).load().train.y) + len(build.data_settings(spec).load().val.y)
    )


def test_a_teacher_module_is_stored_at_start_and_not_needed_to_resume(ray_local, tmp_path):
    from cosearch.core import SpecError
    from cosearch.search_spaces import SEARCH_SPACES

    body = {
        "name": "kd-module",
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "compression": {"weight_bits": [32], "sparsity": [0.0], "distill_alpha": [0.5]},
        "strategy": {"name": "random"},
        "training": {"epochs": 1, "finetune_epochs": 0},
        "latency": {"warmup_runs": 2, "runs": 30},
        "resources": {"trials": 2, "concurrency": 2},
    }
    spec = spec_from_dict(body)
    arch = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}
    space = SEARCH_SPACES.create("nb201", channels=8, cells_per_stage=1)
    with pytest.raises(SpecError, match=r"compression\.teacher"):
        Controller.start(spec, tmp_path / "none")
    with pytest.raises(SpecError, match=r"teacher: the teacher module has 3 output classes.*10 classes"):
        Controller.start(spec, tmp_path / "bad", teacher=space.build(arch, (1, 8, 8), 3))
    assert not (tmp_path / "none").exists() and not (tmp_path / "bad").exists()  # nothing written

    run_dir = tmp_path / "run"
    controller = Controller.start(spec, run_dir, teacher=space.build(arch, (1, 8, 8), 10))
    with RunStore(run_dir) as store:
        info, logits = store.teacher()  # durable before the search starts
    assert info["model"] == "NB201Network (module)" and np.load(io.BytesIO(logits)).shape[1] == 10
    controller.run()
    with RunStore(run_dir) as store:
        assert all(r.result.ok for r in store.results())
    Controller.resume(run_dir).run()  # no module needed: the logits are in the run
    from cosearch.export import export

    with pytest.raises(CosearchError, match=r"module given to Controller\.start"):
        export(run_dir, 1, tmp_path / "tuned", finetune_epochs=1)
    assert not (tmp_path / "tuned").exists()


def test_one_driver_per_run_directory(ray_local, tmp_path):
    from cosearch.core import CosearchError

    run_dir = tmp_path / "run"
    first = Controller.start(job(trials=4, fail_rate=0.0, strategy="random"), run_dir)
    with pytest.raises(CosearchError, match="being driven by another cosearch process"):
        Controller.resume(run_dir)
    with pytest.raises(CosearchError, match="already holds a run"):
        Controller.start(job(trials=4), run_dir)
    first.run()  # the lock goes with the end of the run
    again = Controller.resume(run_dir)
    assert again.state.evaluated == 4
    again.close()


class Repeater(Strategy):
    """Asks for one candidate forever, as optuna's TPE did for a configuration that had failed."""

    def ask(self):
        return self.space.decode(self.space.sample(np.random.default_rng(0)))

    def tell(self, candidate, result):
        pass


def test_a_strategy_that_only_repeats_itself_still_gets_its_trials(ray_local, tmp_path):
    controller = Controller.start(job(trials=10, fail_rate=0.0, strategy="random"), tmp_path / "run")
    controller.strategy = Repeater(
        controller.strategy.space, controller.goals
    )  # not registered: the conformance suite would take it
    state = controller.run()
    rows, status = stored(tmp_path / "run")
    assert status == "finished" and state.finished and not state.reason
    assert len(rows) == 10 and len({r[1] for r in rows}) == 10
    assert state.random_proposals == 9  # the strategy's own candidate, then random ones in place of its repeats


def test_tpe_that_resamples_a_failure_reaches_the_trials(ray_local, tmp_path):
    """optuna:tpe with 5 % failures stopped at 70 of 120 results and said "finished" (seed 1)."""
    spec = job(trials=120, fail_rate=0.05, strategy="optuna:tpe").model_copy(
        update={"resources": job().resources.model_copy(update={"trials": 120, "seed": 1})}
    )
    state = Controller.start(spec, tmp_path / "run").run()
    rows, status = stored(tmp_path / "run")
    assert status == "finished" and len(rows) == 120 and len({r[1] for r in rows}) == 120
    assert any(r[2]["status"] == "failed" for r in rows)
    assert state.random_proposals < 10  # optuna itself learns to avoid the failures


def test_a_used_up_space_finishes_and_says_how_many_candidates_it_has(ray_local, tmp_path):
    tiny = spec_from_dict(
        {
            "name": "tiny",
            "search_space": {
                "name": "mobilenet",
                "stage_channels": [16],
                "stage_strides": [1],
                "depths": [1],
                "widths": [1.0],
            },
            "compression": {"weight_bits": [32], "sparsity": [0.0]},
            "strategy": {"name": "random"},
            "evaluator": {"name": "synthetic"},
            "resources": {"trials": 12, "concurrency": 2, "seed": 0},
        }
    )
    state = Controller.start(tiny, tmp_path / "run").run()
    rows, status = stored(tmp_path / "run")
    assert len(rows) == 9 and status == "finished" and state.finished
    assert "only 9 distinct candidates" in state.reason
    with RunStore(tmp_path / "run") as store:
        assert "only 9 distinct candidates" in store.status()["reason"]


def test_an_address_other_than_the_joined_cluster_is_refused(ray_local):
    """Ray already up in this process (a notebook, or these tests): another --address was ignored."""
    import socket
    import threading

    from cosearch.controller.controller import connect_ray

    current = ray_local.get_runtime_context().gcs_address
    assert connect_ray(current, 2) is False and connect_ray("auto", 2) is False  # joined already: reused
    with pytest.raises(CosearchError, match="no Ray head answers"):
        connect_ray("127.0.0.1:1", 2)
    with socket.create_server(("127.0.0.1", 0)) as server:  # something listens there, silent
        with pytest.raises(CosearchError, match="not a Ray head"):
            connect_ray(f"127.0.0.1:{server.getsockname()[1]}", 2)
    with socket.create_server(("127.0.0.1", 0)) as server:  # a gRPC server, as another cluster's head is

        def greet():
            connection, _ = server.accept()
            with connection:
                connection.recv(33)  # the client's preface and SETTINGS
                connection.sendall(bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]))  # the server's SETTINGS
                connection.recv(1)

        thread = threading.Thread(target=greet, daemon=True)
        thread.start()
        with pytest.raises(CosearchError, match="already connected to the Ray cluster at"):
            connect_ray(f"127.0.0.1:{server.getsockname()[1]}", 2)
        thread.join(timeout=10)
    assert ray_local.is_initialized()
