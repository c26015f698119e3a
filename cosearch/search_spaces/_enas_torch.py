"""PyTorch modules of an ENAS macro network; `layers.i` are the layer slots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cosearch.search_spaces.enas import OPS


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


class ChoiceOp(nn.ModuleDict):
    """Every op one layer can be; forward runs the chosen one."""

    def __init__(self, ops: Mapping[str, nn.Module]) -> None:
        super().__init__(ops)
        self.chosen = next(iter(ops))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[self.chosen](x)


class EnasSupernet(EnasMacroNetwork):
    """Every op at every layer (`layers.3.conv_5x5`); skips carry no weights. A standalone
    network's `layers.3.0.weight` is the supernet's `layers.3.conv_5x5.0.weight` when layer 3 is a 5x5 conv."""

    def __init__(
        self, layers: int, in_channels: int, channels: int, pool_after: Sequence[int], num_classes: int
    ) -> None:
        super().__init__([], [], in_channels, channels, pool_after, num_classes)
        self.layers = nn.ModuleList(ChoiceOp({op: make_op(op, channels) for op in OPS}) for _ in range(layers))
        self.skips = [[] for _ in range(layers)]

    def choose(self, arch: Mapping[str, Any]) -> None:
        for layer, op in zip(self.layers, arch["ops"]):
            layer.chosen = op
        self.skips = [list(s) for s in arch["skips"]]

    def source_key(self, key: str) -> str:
        parts = key.split(".")
        if parts[0] == "layers" and len(parts) > 1:
            return ".".join([*parts[:2], self.layers[int(parts[1])].chosen, *parts[2:]])
        return key
