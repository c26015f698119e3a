"""Fake quantization of weights: per-output-channel, symmetric, at 2-8 bits, trainable by STE."""

from __future__ import annotations

import torch
from torch import nn


class PerChannelSymmetricFakeQuant(nn.Module):
    """A `weight` parametrization: w -> scale * clamp(round(w / scale), -qmax, qmax).

    Scales follow the current weights (min-max per output channel), so quantization-aware
    fine-tuning sees the grid move with the weights; gradients pass straight through inside
    the grid (`torch.fake_quantize_per_channel_affine`).
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        if not 2 <= bits <= 8:
            raise ValueError(f"`2 <= bits <= 8` must hold, but got {bits=}")
        self.bits = bits
        self.qmax = 2 ** (bits - 1) - 1  # narrow range: -qmax..qmax keeps 0 exact and the grid symmetric

    def scale(self, weight: torch.Tensor) -> torch.Tensor:
        amax = weight.detach().abs().flatten(1).amax(dim=1)
        return (amax / self.qmax).clamp_min(1e-8).float()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = self.scale(weight)
        zero_point = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scale, zero_point, 0, -self.qmax, self.qmax)
