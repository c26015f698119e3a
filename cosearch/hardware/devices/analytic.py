"""A bit-serial accelerator model (a BitFusion-style table): latency and energy per layer at its bits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cosearch.core.errors import SpecError
from cosearch.core.schema import Section
from cosearch.hardware.analytic import load_bitfusion
from cosearch.hardware.profiles import DEVICE_KINDS, DeviceContext, DeviceProfile, table_path


class AnalyticEntry(Section):
    kind: Literal["analytic"]
    table: str  # a BitFusion-style table
    activation_bits: int = 8  # the width of layers whose policy leaves activations in float


@DEVICE_KINDS.register("analytic")
@dataclass(frozen=True)
class AnalyticDevice(DeviceProfile):
    table: str  # path of a BitFusion-style per-layer table
    activation_bits: int = 8  # the width of layers whose policy leaves activations in float

    entry = AnalyticEntry
    offers = ("latency_ms", "energy_mj")

    @classmethod
    def check(cls, field: str, spec: Any) -> None:
        if spec.activation_bits not in range(2, 9):
            raise SpecError(f"{field}.activation_bits", spec.activation_bits, "an integer 2..8")

    @classmethod
    def from_spec(cls, name: str, field: str, spec: Any, context: DeviceContext) -> AnalyticDevice:
        table = table_path(field, spec, context)
        try:
            load_bitfusion(table)
        except SpecError as error:
            raise SpecError(f"{field}.table", table, error.allowed) from None
        return cls(name, table, spec.activation_bits)

    def predict(self, onnx_bytes: bytes, layers: Sequence[Any]) -> tuple[dict, dict]:
        out = load_bitfusion(self.table).predict(layers, self.activation_bits)
        metrics, how = {}, {}
        for base in self.offers:
            metrics[f"{base}@{self.name}"] = out[base]
            how[f"{base}@{self.name}"] = {
                "how": "analytic: bit-serial accelerator table",
                "table": self.table,
                "activation_bits": self.activation_bits,
                "layers_in_table": out["exact_share"],
            }
        return metrics, how
