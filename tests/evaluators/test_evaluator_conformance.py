"""Every registered evaluator passes `cosearch.testing.EvaluatorSuite` (add how to make a small one here)."""

from __future__ import annotations

import pytest

from cosearch.evaluators import EVALUATORS
from cosearch.search_spaces import SEARCH_SPACES
from cosearch.testing import EvaluatorSuite
from cosearch.testing.strategies import write_nb201_table

SPACE = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)


def make_train():
    pytest.importorskip("torch")
    from cosearch.evaluators.train import TrainEvaluator, TrainingSettings
    from cosearch.hardware import LatencySettings, MeasuredDevice

    fast = (MeasuredDevice("local-cpu", LatencySettings(warmup_runs=2, runs=5)),)
    return TrainEvaluator(SPACE, training=TrainingSettings(epochs=1, finetune_epochs=0), devices=fast)


def make_table(tmp_path):
    from cosearch.evaluators.table import TableEvaluator

    write_nb201_table(tmp_path / "nb201.csv")
    return TableEvaluator(SPACE, str(tmp_path / "nb201.csv"), {"accuracy": "acc", "latency_ms": "lat"})


def make_synthetic():
    from cosearch.evaluators.synthetic import SyntheticEvaluator

    return SyntheticEvaluator(SPACE)


def make_supernet():
    pytest.importorskip("torch")
    from cosearch.evaluators.supernet import SupernetEvaluator
    from cosearch.evaluators.train import TrainingSettings
    from cosearch.hardware import LatencySettings, MeasuredDevice
    from cosearch.search_spaces import JointSpace

    fast = (MeasuredDevice("local-cpu", LatencySettings(warmup_runs=2, runs=5)),)
    settings = {"training": TrainingSettings(batch_size=256, finetune_epochs=0), "devices": fast}
    checkpoint, _ = SupernetEvaluator(SPACE, epochs=1, **settings).train_supernet(JointSpace(SPACE))
    return SupernetEvaluator(SPACE, epochs=1, supernet=checkpoint, **settings)


MAKE = {"synthetic": make_synthetic, "table": make_table, "train": make_train, "supernet": make_supernet}


def test_every_evaluator_has_a_maker():
    assert sorted(MAKE) == EVALUATORS.names()


class TestEveryEvaluator(EvaluatorSuite):
    @pytest.fixture(params=EVALUATORS.names())
    def evaluator(self, request, tmp_path):
        make = MAKE[request.param]
        return make(tmp_path) if request.param == "table" else make()
