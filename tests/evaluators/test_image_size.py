"""`task.image_size`: every split resized once, the job's input shape follows, and the devices
and networks see the resized images."""

from __future__ import annotations

import numpy as np
import pytest

from cosearch import build
from cosearch.core import SpecError
from cosearch.job import spec_from_dict

torch = pytest.importorskip("torch")


def test_every_split_is_resized_and_keeps_its_labels_and_range():
    from cosearch.evaluators.data import load_dataset

    native, big = load_dataset("digits"), load_dataset("digits", image_size=32)
    assert big.input_shape == (1, 32, 32) and native.input_shape == (1, 8, 8)
    for a, b in ((native.train, big.train), (native.val, big.val), (native.test, big.test)):
        assert np.array_equal(a.y, b.y) and len(b.x) == len(a.x)
        assert b.x.min() >= a.x.min() - 1e-6 and b.x.max() <= a.x.max() + 1e-6  # bilinear stays inside
        assert abs(float(b.x.mean()) - float(a.x.mean())) < 0.05


def test_the_job_input_shape_and_its_devices_follow_image_size():
    job = spec_from_dict({"name": "t", "task": {"dataset": "digits", "image_size": 16}})
    assert job.task.input_shape == (1, 16, 16)
    assert build.data_settings(job).load().input_shape == (1, 16, 16)
    with pytest.raises(SpecError, match=r"task\.image_size"):
        build.check(spec_from_dict({"name": "t", "task": {"image_size": 2}}))


def test_a_candidate_trains_and_is_measured_at_the_resized_shape():
    from cosearch.core import Candidate
    from cosearch.evaluators.train import DataSettings, TrainEvaluator, TrainingSettings
    from cosearch.hardware import LatencySettings, MeasuredDevice
    from cosearch.search_spaces import SEARCH_SPACES

    space = SEARCH_SPACES.create("nb201", channels=4, cells_per_stage=1)
    evaluator = TrainEvaluator(
        space,
        data=DataSettings(image_size=16),
        training=TrainingSettings(epochs=1, finetune_epochs=0),
        devices=(MeasuredDevice("local-cpu", LatencySettings(warmup_runs=2, runs=5)),),
    )
    arch = {"cell": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"}
    result = evaluator.evaluate(Candidate(arch)).result
    assert result.status == "ok", result.error
    assert list(result.measured["latency_ms@local-cpu"]["input_shape"])[-2:] == [16, 16]
