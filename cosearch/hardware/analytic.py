"""A bit-serial accelerator model from a BitFusion-style per-layer table.

The table (APQ's BitFusion lookup table) maps `"(cin, cout, H, k, stride, pad, groups)-W4A8"` to
`{"latency": ..., "energy": ...}` for MobileNetV2-style layers at weight / activation widths
{4, 6, 8}; APQ sums these per network as milliseconds and millijoules. A layer whose exact key
is missing is costed from its nearest entry of the same kind (kernel, stride, depthwise or not,
bits), scaled by MACs: leave-one-out over the table that lands within 10 % for 99 % of entries
(scripts/bench_latency.py measures it). Bits round up to the next width the table has, and a
float layer runs at the widest: a bit-serial array has no float units.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cosearch.core.errors import SpecError
from cosearch.hardware.layers import LayerShape


@dataclass(frozen=True)
class _Entry:
    in_channels: int
    out_channels: int
    in_size: int
    macs: int
    latency_ms: float
    energy_mj: float


def _parse_key(key: str) -> tuple[tuple[int, ...], int, int]:
    shape_text, _, bits_text = key.rpartition("-")
    numbers = tuple(int(v) for v in shape_text.strip("()").split(","))
    if len(numbers) != 7 or not (bits_text.startswith("W") and "A" in bits_text):
        raise ValueError(key)
    weight_width, input_width = (int(v) for v in bits_text[1:].split("A"))
    return numbers, weight_width, input_width


def _macs(cin: int, cout: int, size: int, k: int, stride: int, pad: int, groups: int) -> int:
    out = (size + 2 * pad - k) // stride + 1
    return cout * out * out * k * k * cin // groups


class BitFusionTable:
    """Per-layer latency and energy of a bit-serial accelerator, looked up or scaled by MACs."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SpecError("devices.table", self.path, f"a readable JSON lookup table ({error})") from None
        if not isinstance(raw, dict):
            raise SpecError(
                "devices.table", self.path, 'a JSON object of "(cin, cout, H, k, stride, pad, groups)-W4A8" keys'
            )
        self.exact: dict[tuple[tuple[int, ...], int, int], tuple[float, float]] = {}
        groups: dict[tuple[int, int, bool, int, int], list[_Entry]] = {}
        for key, value in raw.items():
            if key in ("head", "tail"):  # whole-network extras of APQ's MobileNetV2, not layers
                continue
            try:
                shape, wb, ab = _parse_key(key)
                latency, energy = float(value["latency"]), float(value["energy"])
            except (ValueError, TypeError, KeyError):
                raise SpecError(
                    "devices.table",
                    self.path,
                    f'keys like "(cin, cout, H, k, stride, pad, groups)-W4A8" with latency and energy, not {key!r}',
                ) from None
            cin, cout, size, k, stride, _pad, g = shape
            self.exact[(shape, wb, ab)] = (latency, energy)
            groups.setdefault((k, stride, g > 1, wb, ab), []).append(
                _Entry(cin, cout, size, _macs(*shape), latency, energy)
            )
        if not self.exact:
            raise SpecError("devices.table", self.path, "at least one layer entry")
        self.groups = {
            kind: (items, np.log([[e.in_channels, e.out_channels, e.in_size] for e in items]))
            for kind, items in groups.items()
        }
        self.weight_widths = sorted({kind[3] for kind in self.groups})
        self.activation_widths = sorted({kind[4] for kind in self.groups})

    def width(self, bits: int, widths: list[int]) -> int:
        """The narrowest width of the table that holds `bits` (float: the widest)."""
        return next((w for w in widths if w >= bits), widths[-1])

    def layer_cost(self, layer: LayerShape, float_input_bits: int) -> tuple[float, float, bool]:
        """(latency_ms, energy_mj, exact) of one layer; a float input runs at `float_input_bits`."""
        wb = self.width(layer.precision.weights, self.weight_widths)
        ab = self.width(layer.precision.inputs if layer.precision.integer else float_input_bits, self.activation_widths)
        shape = (
            layer.in_channels,
            layer.out_channels,
            layer.in_size,
            layer.kernel,
            layer.stride,
            layer.padding,
            layer.groups,
        )
        hit = self.exact.get((shape, wb, ab))
        if hit is not None:
            return hit[0], hit[1], True
        kind = (layer.kernel, layer.stride, layer.groups > 1, wb, ab)
        if kind not in self.groups:  # e.g. a dense 3x3 conv: scale the dense 1x1 entries by MACs
            same_bits = [g for g in self.groups if g[2] == (layer.groups > 1) and g[3:] == (wb, ab)]
            same_bits = same_bits or [g for g in self.groups if g[3:] == (wb, ab)]
            kind = min(same_bits, key=lambda g: (abs(g[0] - layer.kernel), abs(g[1] - layer.stride)))
        items, features = self.groups[kind]
        target = np.log([layer.in_channels, layer.out_channels, max(layer.in_size, 1)])
        nearest = items[int(np.argmin(np.abs(features - target).sum(axis=1)))]
        scale = layer.macs / max(nearest.macs, 1)
        return nearest.latency_ms * scale, nearest.energy_mj * scale, False

    def predict(self, layers: Sequence[LayerShape], float_input_bits: int) -> dict[str, float]:
        latency = energy = 0.0
        exact = 0
        for layer in layers:
            layer_latency, layer_energy, hit = self.layer_cost(layer, float_input_bits)
            latency, energy, exact = latency + layer_latency, energy + layer_energy, exact + hit
        if not (math.isfinite(latency) and math.isfinite(energy)):
            raise ValueError(f"non-finite cost from {self.path}")
        return {"latency_ms": latency, "energy_mj": energy, "exact_share": exact / max(len(layers), 1)}

    def leave_one_out(self) -> dict[str, float]:
        """How close the MACs-scaled fallback comes: each entry predicted from its nearest other."""
        errors_latency, errors_energy = [], []
        for items, features in self.groups.values():
            for i, item in enumerate(items):
                distance = np.abs(features - features[i]).sum(axis=1)
                distance[i] = np.inf
                if len(items) < 2:
                    continue
                other = items[int(np.argmin(distance))]
                scale = item.macs / max(other.macs, 1)
                errors_latency.append(other.latency_ms * scale / item.latency_ms - 1)
                errors_energy.append(other.energy_mj * scale / item.energy_mj - 1)
        lat, en = np.abs(errors_latency), np.abs(errors_energy)
        return {
            "entries": len(lat),
            "latency_within_10pct": float(np.mean(lat <= 0.1)),
            "energy_within_10pct": float(np.mean(en <= 0.1)),
            "latency_median_abs_error": float(np.median(lat)),
        }


@lru_cache(maxsize=4)
def load_bitfusion(path: str) -> BitFusionTable:
    """A table per path and process (workers receive the profile, not the parsed table)."""
    return BitFusionTable(path)
