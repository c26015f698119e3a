"""Device entries of a job: one model per kind, picked by `kind` through the device registry."""

from __future__ import annotations

import pytest

from cosearch.core import SpecError
from cosearch.hardware.devices.analytic import AnalyticEntry
from cosearch.hardware.devices.lut import LutEntry
from cosearch.hardware.devices.measured import MeasuredEntry
from cosearch.job import spec_from_dict

# A device as runs stored before each kind had its own entry wrote it: every field, at its default.
STORED_BEFORE = {
    "resource": None,
    "threads": None,
    "batch_size": None,
    "warmup_runs": None,
    "runs": None,
    "statistic": "median",
    "table": None,
    "activation_bits": 8,
}


def test_each_device_is_its_kinds_entry_and_dumps_only_its_fields():
    job = spec_from_dict(
        {
            "devices": {
                "cpu": {},
                "phone": {"kind": "lut", "table": "lut.json"},
                "npu": {"kind": "analytic", "table": "t"},
            }
        }
    )
    assert isinstance(job.devices["cpu"], MeasuredEntry) and job.devices["cpu"].kind == "measured"
    assert isinstance(job.devices["phone"], LutEntry) and isinstance(job.devices["npu"], AnalyticEntry)
    assert job.to_json()["devices"]["phone"] == {"kind": "lut", "table": "lut.json"}
    assert spec_from_dict(job.to_json()) == job  # a stored job reads back as it was


@pytest.mark.parametrize("kind, own", [("measured", {"runs": 40}), ("lut", {"table": "lut.json"})])
def test_a_device_stored_with_every_kinds_defaults_still_reads(kind, own):
    job = spec_from_dict({"devices": {"x": {**STORED_BEFORE, "kind": kind, **own}}})
    assert job.devices["x"].kind == kind and job.devices["x"].model_dump(exclude={"kind"}).items() >= own.items()


def test_another_kinds_field_with_a_value_is_refused_naming_this_kinds_fields():
    with pytest.raises(SpecError, match=r"devices.x.activation_bits: not used by this kind .*fields of a lut device"):
        spec_from_dict({"devices": {"x": {"kind": "lut", "table": "t", "activation_bits": 4}}})


def test_a_profiles_file_entry_names_its_file(tmp_path):
    from cosearch import build

    (tmp_path / "team.yaml").write_text("devices:\n  npu: {kind: analytic, table: t.json, runs: 3}\n")
    job = spec_from_dict({"profiles": str(tmp_path / "team.yaml")})
    with pytest.raises(SpecError, match=r"profiles \(.*team.yaml\): devices.npu.runs: not used by this kind"):
        build.device_profiles(job)
