"""Hashed weight sharing (HashedNets, Chen et al. 2015): a layer's weights drawn from a few buckets."""

from __future__ import annotations

import math

import torch
from torch import nn

_MULTIPLIER = 2654435761  # Knuth's multiplicative hash; indices stay below 2**31, so no int64 overflow
_SIGN_MULTIPLIER = 40503


def hash_indices(numel: int, buckets: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(bucket of each weight index, its sign +-1), a fixed function of the index and the seed:
    nothing but the bucket values and the seed needs storing."""
    index = torch.arange(numel, dtype=torch.int64) + seed * 7919
    bucket = ((index * _MULTIPLIER) % (2**32)) % buckets
    sign = (((index * _SIGN_MULTIPLIER) % (2**16)) >> 7) % 2 * 2 - 1
    return bucket, sign.float()


class HashedWeights(nn.Module):
    """A `weight` parametrization: w[i] = sign(i) * buckets[h(i)], with ceil(ratio x weights) buckets.

    Buckets start as the least-squares fit of the current weights (the signed mean of each
    bucket's members), so sharing applied to a trained layer keeps what it can; fine-tuning
    then trains the buckets, and the layer's original weights are no longer used.
    """

    def __init__(self, weight: torch.Tensor, ratio: float, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f"`0 < ratio <= 1` must hold, but got {ratio=}")
        self.ratio = ratio
        count = self.buckets_for(weight.numel(), ratio)
        bucket, sign = hash_indices(weight.numel(), count, seed)
        self.register_buffer("bucket", bucket.view(weight.shape), persistent=False)  # recomputed from the seed
        self.register_buffer("sign", sign.view(weight.shape), persistent=False)
        flat = weight.detach().flatten() * sign
        sums = torch.zeros(count).index_add_(0, bucket, flat)
        members = torch.zeros(count).index_add_(0, bucket, torch.ones_like(flat)).clamp_min(1)
        self.buckets = nn.Parameter(sums / members)

    @staticmethod
    def buckets_for(numel: int, ratio: float) -> int:
        return max(1, math.ceil(numel * ratio))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return self.buckets[self.bucket] * self.sign
