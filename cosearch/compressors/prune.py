"""Unstructured magnitude pruning with a fixed mask (prune once, then fine-tune), per layer or global."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune

from cosearch.core.candidate import Policy

MAX_SPARSITY = 0.99  # a layer keeps at least 1 % of its weights: all-zero layers break the graph


class MagnitudeMask(nn.Module):
    """A `weight` parametrization that zeroes the smallest-magnitude `sparsity` share of weights.

    The mask is chosen once, from the weights it is created with (torch's L1Unstructured), and
    kept as a buffer so fine-tuning cannot revive pruned weights.
    """

    def __init__(self, weight: torch.Tensor, sparsity: float) -> None:
        super().__init__()
        if not 0.0 <= sparsity < 1.0:
            raise ValueError(f"`0 <= sparsity < 1` must hold, but got {sparsity=}")
        self.sparsity = sparsity
        self.register_buffer("mask", magnitude_mask(weight, sparsity))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """1 for the weights kept, 0 for the smallest-magnitude `sparsity` share (torch's L1Unstructured)."""
    return prune.L1Unstructured(amount=sparsity).compute_mask(weight.detach(), torch.ones_like(weight))


def global_magnitude_policy(model: nn.Module, policy: Policy, sparsity: float) -> Policy:
    """`policy` with each slot's sparsity set by one magnitude threshold over all slots' weights.

    Global pruning (as in Han et al. 2015 and torch's `global_unstructured`): the smallest
    `sparsity` share of all weights goes, wherever it lies, so layers with many small weights
    lose more. The result is an ordinary per-layer policy, so everything downstream (masks,
    size accounting, export) is unchanged. Slots are the policy's, or every layer if it has none.
    """
    from cosearch.compressors.policy import compression_slots, layers_of_slot

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
