"""Hashed weight sharing (HashedNets): a layer's weights drawn from ceil(ratio x weights) buckets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, WeightCost


@COMPRESSORS.register("hash_ratio")
class HashRatio(Compressor):
    gene = Gene(
        scope="layer", default=1.0, search=(1.0,), kind=float,
        rule="0 < hash_ratio <= 1", allowed="a ratio with 0 < hash_ratio <= 1 (1 = not shared)",
        check=lambda v: 0.0 < v <= 1.0, genome="hash", group="hash",
    )  # fmt: skip
    stage = 20  # first on the weights: masks and scales then act on the shared weights
    summary_position = 30

    def summarize(self, values: Sequence[Any]) -> str | None:
        hashed = [v for v in values if v != 1.0]
        return f"hashed x{len(hashed)} (mean ratio {sum(hashed) / len(hashed):.2f})" if hashed else None

    def apply(self, module: Any, value: float, learn: bool) -> None:
        from torch.nn.utils import parametrize

        from cosearch.compressors.hashing import HashedWeights

        parametrize.register_parametrization(module, "weight", HashedWeights(module.weight, value))

    def weight_cost(self, value: float, weight: Any, cost: WeightCost) -> WeightCost:
        from cosearch.compressors.hashing import HashedWeights

        # The layer rebuilds its weights from the buckets (float32) and a seed.
        return WeightCost(HashedWeights.buckets_for(weight.numel(), value), 32, cost.extra_bits, shared=True)
