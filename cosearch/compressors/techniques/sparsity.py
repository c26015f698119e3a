"""Unstructured magnitude pruning: the smallest `sparsity` share of a layer's weights set to zero."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, WeightCost


@COMPRESSORS.register("sparsity")
class Sparsity(Compressor):
    gene = Gene(
        scope="layer", default=0.0, search=(0.0, 0.25, 0.5, 0.75), kind=float,
        rule="0 <= sparsity < 1", allowed="a fraction with 0 <= sparsity < 1", check=lambda v: 0.0 <= v < 1.0,
        genome="sparsity", group="sparsity", always_a_gene=True, always_written=True,
    )  # fmt: skip
    stage = 30  # before quantization, so scales cover the weights that remain
    summary_position = 90

    def summarize(self, values: Sequence[Any]) -> str:
        return f"sparsity {sum(values) / len(values):.2f}"

    def apply(self, module: Any, value: float, learn: bool) -> None:
        from torch.nn.utils import parametrize

        from cosearch.compressors.prune import MagnitudeMask

        parametrize.register_parametrization(module, "weight", MagnitudeMask(module.weight, value))

    elastic = True

    def elastic_weight(self, weight: Any, value: float) -> Any:
        from cosearch.compressors.prune import magnitude_mask

        return weight * magnitude_mask(weight, value)  # the mask follows the weights, step by step

    def weight_cost(self, value: float, weight: Any, cost: WeightCost) -> WeightCost:
        import torch

        mask = weight.numel()  # 1 bit per weight says which are kept
        if cost.shared:
            return WeightCost(cost.values, cost.bits_per_value, cost.extra_bits + mask, shared=True)
        return WeightCost(int(torch.count_nonzero(weight)), cost.bits_per_value, cost.extra_bits + mask)
