"""Device profiles: how a device's costs are obtained. Torch-free; the job file builds them.

- `measured`: ONNX Runtime times the candidate's file on a machine that has the device. A
  profile may name a Ray custom resource (`device:rpi4`); the controller then runs its
  measurements only on nodes that declare it.
- `lut`: a per-layer latency table profiled on the device (`cosearch profile`); prediction
  sums the layers of the candidate's ONNX Runtime graph plus a measured fixed overhead.
- `analytic`: a bit-serial accelerator model (BitFusion-style table): latency and energy per
  layer at the layer's weight / activation bits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from cosearch.core.objectives import DEFAULT_DEVICE
from cosearch.hardware.onnx_runtime import LatencySettings

Statistic = Literal["median", "p90"]


@dataclass(frozen=True)
class MeasuredDevice:
    name: str
    settings: LatencySettings = field(default_factory=LatencySettings)
    statistic: Statistic = "median"
    resource: str | None = None  # Ray custom resource of the nodes that have the device

    kind = "measured"

    def metrics(self) -> tuple[str, ...]:
        return (f"latency_ms@{self.name}",)


@dataclass(frozen=True)
class LutDevice:
    name: str
    table: str  # path of a table written by `cosearch profile`

    kind = "lut"

    def metrics(self) -> tuple[str, ...]:
        return (f"latency_ms@{self.name}",)


@dataclass(frozen=True)
class AnalyticDevice:
    name: str
    table: str  # path of a BitFusion-style per-layer table
    activation_bits: int = 8  # the width of layers whose policy leaves activations in float

    kind = "analytic"

    def metrics(self) -> tuple[str, ...]:
        return (f"latency_ms@{self.name}", f"energy_mj@{self.name}")


DeviceProfile = MeasuredDevice | LutDevice | AnalyticDevice
KINDS = ("measured", "lut", "analytic")


def builtin_devices(settings: LatencySettings = LatencySettings()) -> dict[str, DeviceProfile]:
    """The devices every job has without declaring them: this machine's CPU, measured."""
    return {DEFAULT_DEVICE: MeasuredDevice(DEFAULT_DEVICE, settings)}
