"""PyTorch modules of an ENAS macro network; `layers.i` are the layer slots."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def make_op(op: str, channels: int) -> nn.Module:
    kind, size = op.rsplit("_", 1)
    kernel = int(size[0])
    if kind == "conv":
        return nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(channels), nn.ReLU()
        )
    if kind == "sep_conv":
        return nn.Sequential(
            nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )
    if kind == "max_pool":
        return nn.MaxPool2d(3, stride=1, padding=1)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


class EnasMacroNetwork(nn.Module):
    def __init__(
        self,
        ops: Sequence[str],
        skips: Sequence[Sequence[int]],
        in_channels: int,
        channels: int,
        pool_after: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(channels))
        self.layers = nn.ModuleList(make_op(op, channels) for op in ops)
        self.skips = [list(s) for s in skips]
        self.pool_after = set(pool_after)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        outputs: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            out = layer(x)
            for j in self.skips[i]:
                skip = outputs[j]
                while skip.shape[-1] > out.shape[-1]:  # from before a pooling: bring it down
                    skip = nn.functional.avg_pool2d(skip, 2, ceil_mode=True)
                out = out + skip
            outputs.append(out)
            x = nn.functional.avg_pool2d(out, 2, ceil_mode=True) if i in self.pool_after else out
        return self.classifier(x.mean(dim=(2, 3)))
