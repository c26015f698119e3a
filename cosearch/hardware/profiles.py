"""What a device kind is: how a device's costs are obtained. Torch-free; the job file builds them.

A kind is one file in `cosearch/hardware/devices/` holding one frozen dataclass under
`@DEVICE_KINDS.register(name)`; the name is the job's `devices: {NAME: {kind: ...}}`. Built in:

- `measured`: ONNX Runtime times the candidate's file on a machine that has the device. A
  profile may name a Ray custom resource (`device:rpi4`); the controller then runs its
  measurements only on nodes that declare it.
- `lut`: a per-layer latency table profiled on the device (`cosearch profile`); prediction
  sums the layers of the candidate's ONNX Runtime graph plus a measured fixed overhead.
- `analytic`: a bit-serial accelerator model (BitFusion-style table): latency and energy per
  layer at the layer's weight / activation bits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cosearch.core.errors import SpecError
from cosearch.core.objectives import DEFAULT_DEVICE
from cosearch.core.registry import Registry
from cosearch.core.schema import Section
from cosearch.hardware.onnx_runtime import LatencySettings


@dataclass(frozen=True)
class DeviceContext:
    """What building a device from its job entry may use besides the entry itself."""

    latency: Mapping[str, Any]  # the job's `latency` section: defaults for measured settings
    input_shape: Sequence[int]  # of the task's images
    base: Path | None = None  # relative table paths are read from here (a profiles file's folder)

    def path(self, table: str) -> str:
        return str(self.base / table) if self.base is not None and not Path(table).is_absolute() else table


@dataclass(frozen=True)
class DeviceProfile:
    """Base of every device kind. `entry` is the job's entry for one device of this kind (a
    `Section` with `kind: Literal[NAME]` and the kind's own fields: the job dispatches each of its
    `devices` on `kind` to one of these); `offers` the metric bases it reports (`latency_ms` -> `latency_ms@NAME`).
    A `measured` kind is timed after the candidate's file exists (`cosearch.hardware.costs.measure_here`);
    the others `predict` before training, cheaply."""

    name: str

    entry: ClassVar[type[Section]]
    offers: ClassVar[tuple[str, ...]] = ("latency_ms",)
    measured: ClassVar[bool] = False

    @classmethod
    def fields(cls) -> frozenset[str]:
        """The job fields this kind takes besides `kind`."""
        return frozenset(cls.entry.model_fields) - {"kind"}

    @property
    def kind(self) -> str:
        return type(self).registry_name  # type: ignore[attr-defined]

    def metrics(self) -> tuple[str, ...]:
        return tuple(f"{base}@{self.name}" for base in self.offers)

    @classmethod
    def check(cls, field: str, spec: Any) -> None:
        """What its `entry` model cannot say, checked without reading files; raise SpecError naming `field`."""

    @classmethod
    def from_spec(cls, name: str, field: str, spec: Any, context: DeviceContext) -> DeviceProfile:
        """The device of a checked job entry (reads its files: SpecError naming `field`)."""
        raise NotImplementedError

    def predict(self, onnx_bytes: bytes, layers: Sequence[Any]) -> tuple[dict, dict]:
        """Predicted metrics of a candidate's file (run with default session options) and its layers,
        and how each was obtained."""
        return {}, {}


def table_path(field: str, spec: Any, context: DeviceContext) -> str:
    """The existing table a lut / analytic entry names (`check` made sure it names one)."""
    table = context.path(spec.table)
    if not Path(table).is_file():
        raise SpecError(f"{field}.table", table, "an existing table file")
    return table


DEVICE_KINDS: Registry[DeviceProfile] = Registry("device kind")

from cosearch.hardware.devices import AnalyticDevice, LutDevice, MeasuredDevice  # noqa: E402 - they register

__all__ = ["DEVICE_KINDS", "AnalyticDevice", "DeviceContext", "DeviceProfile", "LutDevice", "MeasuredDevice"]


def builtin_devices(settings: LatencySettings = LatencySettings()) -> dict[str, DeviceProfile]:
    """The devices every job has without declaring them: this machine's CPU, measured."""
    return {DEFAULT_DEVICE: MeasuredDevice(DEFAULT_DEVICE, settings)}
