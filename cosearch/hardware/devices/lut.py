"""A device predicted from a per-layer latency table profiled on it (`cosearch profile`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from cosearch.core.errors import SpecError
from cosearch.core.schema import Section
from cosearch.hardware.lut import LatencyTable
from cosearch.hardware.profiles import DEVICE_KINDS, DeviceContext, DeviceProfile, table_path


@lru_cache(maxsize=8)
def load_latency_table(path: str) -> LatencyTable:
    return LatencyTable.load(path)


class LutEntry(Section):
    kind: Literal["lut"]
    table: str  # a `cosearch profile` table; a relative path is read from the profiles file's folder


@DEVICE_KINDS.register("lut")
@dataclass(frozen=True)
class LutDevice(DeviceProfile):
    table: str  # path of a table written by `cosearch profile`

    entry = LutEntry

    @classmethod
    def from_spec(cls, name: str, field: str, spec: Any, context: DeviceContext) -> LutDevice:
        table = table_path(field, spec, context)
        lut = LatencyTable.load(table, f"{field}.table")
        if lut.input_shape != list(context.input_shape):
            raise SpecError(
                f"{field}.table",
                table,
                f"a table profiled at the task's input shape {list(context.input_shape)}, not {lut.input_shape}",
            )
        return cls(name, table)

    def predict(self, onnx_bytes: bytes, layers: Sequence[Any]) -> tuple[dict, dict]:
        table = load_latency_table(self.table)
        metric = f"latency_ms@{self.name}"
        how = {
            "how": "predicted: per-layer lookup table",
            "table": self.table,
            "profiled_on": table.source.get("processor"),
        }
        return {metric: table.predict(onnx_bytes)}, {metric: how}
