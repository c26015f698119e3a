"""A device timed by ONNX Runtime on a machine that has it (this one, or Ray nodes with its resource)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from cosearch.core.errors import SpecError
from cosearch.core.schema import Section
from cosearch.hardware.onnx_runtime import LatencySettings
from cosearch.hardware.profiles import DEVICE_KINDS, DeviceContext, DeviceProfile

Statistic = Literal["median", "p90"]


class MeasuredEntry(Section):
    kind: Literal["measured"] = "measured"
    resource: str | None = None  # Ray custom resource of the nodes that have the device
    threads: int | None = Field(None, ge=1)  # these four default to the job's `latency` section (same bounds)
    batch_size: int | None = Field(None, ge=1)
    warmup_runs: int | None = Field(None, ge=0)
    runs: int | None = Field(None, ge=30)
    statistic: Statistic = "median"


@DEVICE_KINDS.register("measured")
@dataclass(frozen=True)
class MeasuredDevice(DeviceProfile):
    settings: LatencySettings = field(default_factory=LatencySettings)
    statistic: Statistic = "median"
    resource: str | None = None  # Ray custom resource of the nodes that have the device

    entry = MeasuredEntry
    measured = True

    @classmethod
    def check(cls, field: str, spec: Any) -> None:
        if spec.resource is not None and not spec.resource.strip():
            raise SpecError(f"{field}.resource", spec.resource, "a Ray custom resource name, e.g. device:rpi4")

    @classmethod
    def from_spec(cls, name: str, field: str, spec: Any, context: DeviceContext) -> MeasuredDevice:
        values = dict(context.latency)  # the job's latency section, with this device's own settings over it
        values.update({key: getattr(spec, key) for key in values if getattr(spec, key, None) is not None})
        return cls(name, LatencySettings(**values), spec.statistic, spec.resource)
