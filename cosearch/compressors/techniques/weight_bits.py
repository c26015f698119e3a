"""Weight quantization: per-output-channel symmetric fake quantization at 2-8 bits (32 = float)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, WeightCost

FLOAT_BITS = 32


def _bits(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and (2 <= value <= 8 or value == FLOAT_BITS)


@COMPRESSORS.register("weight_bits")
class WeightBits(Compressor):
    gene = Gene(
        scope="layer", default=FLOAT_BITS, search=(4, 8, FLOAT_BITS), kind=int,
        rule="2 <= weight_bits <= 8 or weight_bits == 32", allowed="integers 2..8, or 32 for float", check=_bits,
        genome="bits", group="bits", always_a_gene=True, always_written=True,
    )  # fmt: skip
    precision_of = "weights"
    stage = 40  # last on the weights: scales are taken over what pruning and sharing left
    summary_position = 0

    def summarize(self, values: Sequence[Any]) -> str:
        counts: dict[int, int] = {}
        for bits in values:
            counts[bits] = counts.get(bits, 0) + 1
        return " ".join(f"{'fp' if b == FLOAT_BITS else 'w' + str(b)}x{n}" for b, n in sorted(counts.items()))

    def apply(self, module: Any, value: int, learn: bool) -> None:
        from torch.nn.utils import parametrize

        from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

        parametrize.register_parametrization(module, "weight", PerChannelSymmetricFakeQuant(value))

    elastic = True

    def elastic_weight(self, weight: Any, value: int) -> Any:
        from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

        return PerChannelSymmetricFakeQuant(value)(weight)

    def weight_cost(self, value: int, weight: Any, cost: WeightCost) -> WeightCost:
        if cost.shared:  # hashed buckets are floats: rounding the rebuilt weights does not make them integers
            return cost
        return WeightCost(cost.values, value, cost.extra_bits + weight.shape[0] * 32)  # + an fp32 scale per channel
