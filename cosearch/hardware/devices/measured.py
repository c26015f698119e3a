"""A device timed by ONNX Runtime on a machine that has it (this one, or Ray nodes with its resource)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from cosearch.core.errors import SpecError
from cosearch.hardware.onnx_runtime import LatencySettings
from cosearch.hardware.profiles import DEVICE_KINDS, DeviceContext, DeviceProfile

Statistic = Literal["median", "p90"]
MINIMUM = {"threads": 1, "batch_size": 1, "warmup_runs": 0, "runs": 30}  # as the job's latency section


@DEVICE_KINDS.register("measured")
@dataclass(frozen=True)
class MeasuredDevice(DeviceProfile):
    settings: LatencySettings = field(default_factory=LatencySettings)
    statistic: Statistic = "median"
    resource: str | None = None  # Ray custom resource of the nodes that have the device

    fields = frozenset({"resource", "threads", "batch_size", "warmup_runs", "runs", "statistic"})
    measured = True

    @classmethod
    def check(cls, field: str, spec: Any) -> None:
        for key, low in MINIMUM.items():
            if getattr(spec, key) is not None and getattr(spec, key) < low:
                raise SpecError(f"{field}.{key}", getattr(spec, key), f"an integer >= {low}")
        if spec.statistic not in ("median", "p90"):
            raise SpecError(f"{field}.statistic", spec.statistic, "median or p90")
        if spec.resource is not None and not spec.resource.strip():
            raise SpecError(f"{field}.resource", spec.resource, "a Ray custom resource name, e.g. device:rpi4")

    @classmethod
    def from_spec(cls, name: str, field: str, spec: Any, context: DeviceContext) -> MeasuredDevice:
        values = dict(context.latency)  # the job's latency section, with this device's own settings over it
        values.update({key: getattr(spec, key) for key in values if getattr(spec, key, None) is not None})
        return cls(name, LatencySettings(**values), spec.statistic, spec.resource)
