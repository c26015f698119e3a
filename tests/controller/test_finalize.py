"""`finalize`: at the end of a supernet search its best Pareto members are trained standalone and
stored beside the search's results; the Pareto set, status and export use those; a run stopped
while they train resumes with only the missing ones; other evaluators refuse the section."""

from __future__ import annotations

import pytest

from cosearch import build
from cosearch.controller import Controller, RunStore
from cosearch.controller.store import is_final
from cosearch.core import SpecError
from cosearch.job import spec_from_dict

pytestmark = pytest.mark.ray
pytest.importorskip("torch")

JOB = {
    "name": "fin",
    "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
    "compression": {"weight_bits": [4, 8, 32], "sparsity": [0.0, 0.5]},
    "evaluator": {"name": "supernet", "epochs": 1},
    "strategy": {"name": "random"},
    "objectives": ["accuracy", "size_kb"],
    "training": {"batch_size": 128, "epochs": 1, "finetune_epochs": 0},
    "latency": {"warmup_runs": 2, "runs": 30},
    "resources": {"trials": 6, "concurrency": 2, "seed": 0},
    "finalize": {"top_k": 2, "final_epochs": 1, "from": "inherited"},
}


def results(run_dir):
    with RunStore(run_dir) as store:
        return store.results(), store.status()


def test_the_picks_are_trained_standalone_and_the_pareto_set_is_built_from_them(ray_local, tmp_path, capsys):
    from cosearch.cli.main import main
    from cosearch.report import ranked_ids

    run_dir = tmp_path / "run"
    state = Controller.start(spec_from_dict(JOB), run_dir).run()
    stored, status = results(run_dir)
    searched = [r for r in stored if not is_final(r.result)]
    finals = [r for r in stored if is_final(r.result)]
    assert status["state"] == "finished" and state.evaluated == 6 and len(searched) == 6
    picks = ranked_ids(searched, spec_from_dict(JOB).goals(), 2)
    assert sorted(f.result.measured["final"]["of"] for f in finals) == sorted(picks)
    for final in finals:
        assert final.result.ok, final.result.error
        of = next(r for r in searched if r.id == final.result.measured["final"]["of"])
        assert final.result.candidate.key == of.result.candidate.key
        assert final.result.measured["final"]["searched_accuracy"] == of.result.metrics["accuracy"]
        assert final.result.measured["training"]["how"] == "trained standalone from its inherited supernet weights"

    assert main(["pareto", str(run_dir)]) == 0
    shown = capsys.readouterr().out
    assert "final, standalone trainings" in shown and "searched" in shown
    assert main(["status", str(run_dir)]) == 0
    assert "evaluated 6/6" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--pick", str(finals[0].id), "--out", str(tmp_path / "x")]) == 0
    assert (tmp_path / "x" / "model.onnx").is_file()

    Controller.resume(run_dir).run()  # finished: nothing is trained again
    assert [r.id for r in results(run_dir)[0]] == [r.id for r in stored]


def test_a_run_stopped_while_its_picks_train_trains_only_the_missing_ones(ray_local, tmp_path):
    def stop_once_one_is_stored(state):
        if state.note.startswith("training the search's 2 picks standalone (1 done)"):
            raise KeyboardInterrupt

    job = {**JOB, "resources": {**JOB["resources"], "concurrency": 1}, "finalize": {"top_k": 2, "from": "scratch"}}
    with pytest.raises(KeyboardInterrupt):
        Controller.start(spec_from_dict(job), tmp_path / "run", listener=stop_once_one_is_stored).run()
    stored, status = results(tmp_path / "run")
    first = [r for r in stored if is_final(r.result)]
    assert status["state"] == "stopped" and len(first) == 1
    Controller.resume(tmp_path / "run").run()
    stored, status = results(tmp_path / "run")
    finals = [r for r in stored if is_final(r.result)]
    assert status["state"] == "finished" and len(finals) == 2 and finals[0].id == first[0].id
    assert finals[1].result.measured["training"]["how"] == "trained standalone from scratch"


def test_finalize_needs_an_evaluator_that_trains_picks():
    job = {**JOB, "evaluator": {"name": "train"}}
    with pytest.raises(SpecError) as error:
        build.check(spec_from_dict(job))
    assert error.value.field == "finalize" and "has no final training" in str(error.value)
