"""Unstructured magnitude pruning with a fixed mask (prune once, then fine-tune)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


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
        mask = prune.L1Unstructured(amount=sparsity).compute_mask(weight.detach(), torch.ones_like(weight))
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask
