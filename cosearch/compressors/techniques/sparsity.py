"""Unstructured magnitude pruning: the smallest `sparsity` share of a layer's weights set to zero."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, WeightCost

MAX_SPARSITY = 0.99  # a layer keeps at least 1 % of its weights: all-zero layers break the graph


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

    def zeroed_share(self, value: float) -> float:
        return value

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


def global_magnitude_policy(model: Any, policy: Any, sparsity: float) -> Any:
    """`policy` with each slot's sparsity set by one magnitude threshold over all slots' weights.

    Global pruning (as in Han et al. 2015 and torch's `global_unstructured`): the smallest
    `sparsity` share of all weights goes, wherever it lies, so layers with many small weights
    lose more. The result is an ordinary per-layer policy, so everything downstream (masks,
    size accounting, export) is unchanged. Slots are the policy's, or every layer if it has none.
    """
    import torch

    from cosearch.compressors.policy import compression_slots, layers_of_slot
    from cosearch.core.candidate import Policy

    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"`0 <= sparsity < 1` must hold, but got {sparsity=}")
    slots = list(policy.layers) or sorted(compression_slots(model))
    weights = {
        slot: torch.cat([m.weight.detach().abs().flatten() for m in layers_of_slot(model, slot).values()])
        for slot in slots
    }
    everything = torch.cat(list(weights.values()))
    pruned = round(sparsity * everything.numel())
    threshold = torch.kthvalue(everything, pruned).values if pruned else everything.new_tensor(-1.0)
    layers = {}
    for slot, magnitudes in weights.items():
        share = float((magnitudes <= threshold).float().mean())
        layers[slot] = policy.get(slot).replace(sparsity=min(share, MAX_SPARSITY))
    return Policy(layers, **policy.network)
