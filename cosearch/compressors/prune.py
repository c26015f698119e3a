"""Unstructured magnitude pruning with a fixed mask (prune once, then fine-tune): the torch side of
the `techniques/sparsity.py` technique, which also holds its global form."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune


class MagnitudeMask(nn.Module):
    """A `weight` parametrization that zeroes the smallest-magnitude `amount` share of weights.

    The mask is chosen once, from the weights it is created with (torch's L1Unstructured), and
    kept as a buffer so fine-tuning cannot revive pruned weights.
    """

    def __init__(self, weight: torch.Tensor, amount: float) -> None:
        super().__init__()
        if not 0.0 <= amount < 1.0:
            raise ValueError(f"`0 <= amount < 1` must hold, but got {amount=}")
        self.amount = amount
        self.register_buffer("mask", magnitude_mask(weight, amount))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def magnitude_mask(weight: torch.Tensor, amount: float) -> torch.Tensor:
    """1 for the weights kept, 0 for the smallest-magnitude `amount` share (torch's L1Unstructured)."""
    return prune.L1Unstructured(amount=amount).compute_mask(weight.detach(), torch.ones_like(weight))
