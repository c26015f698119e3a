"""PyTorch modules of a DARTS network (ops as in the paper's code); module names are the layer slots."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cosearch.search_spaces.darts import OPS, SIDES, STEPS, Cell, live_cells, parse_genotype


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out)
        )


class DilConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )


class SepConv(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__(DilConv(c_in, c_in, kernel, stride, padding, 1), DilConv(c_in, c_out, kernel, 1, padding, 1))


class Zero(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride] * 0.0


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convs (so no pixel is skipped)."""

    # Its two convs fill one BatchNorm: channel pruning ranked over both would split the cut
    # between them by weight, so pruned shapes (and saved weights) would depend on training.
    structured_pruning = False

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))  # odd sizes: pad back to x's size
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


def make_op(op: str, channels: int, stride: int) -> nn.Module:
    if op == "none":
        return Zero(stride)
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
    if op == "max_pool_3x3":
        return nn.MaxPool2d(3, stride=stride, padding=1)
    if op == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(channels, channels)
    kind, _, size = op.split("_")
    kernel = int(size[0])
    if kind == "sep":
        return SepConv(channels, channels, kernel, stride, kernel // 2)
    return DilConv(channels, channels, kernel, stride, kernel - 1, 2)


class DartsCell(nn.Module):
    def __init__(
        self, cell: Cell, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool
    ) -> None:
        super().__init__()
        # An input no edge reads gets no preprocessing layer: dead layers would cost size, and
        # structured pruning (which follows the traced graph) would leave their inputs unpruned.
        used = {source for _, source in cell}
        self.pre0 = (
            (FactorizedReduce(c_prev_prev, channels) if reduction_prev else ReLUConvBN(c_prev_prev, channels, 1, 1, 0))
            if 0 in used
            else None
        )
        self.pre1 = ReLUConvBN(c_prev, channels, 1, 1, 0) if 1 in used else None
        self.edges = []
        for position, (op, source) in enumerate(cell):
            node, side = 2 + position // 2, SIDES[position % 2]
            stride = 2 if reduction and source < 2 else 1
            self.add_module(f"n{node}{side}", make_op(op, channels, stride))
            self.edges.append((f"n{node}{side}", source))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0) if self.pre0 is not None else None, self.pre1(s1) if self.pre1 is not None else None]
        for step in range(STEPS):
            (name_a, src_a), (name_b, src_b) = self.edges[2 * step : 2 * step + 2]
            states.append(getattr(self, name_a)(states[src_a]) + getattr(self, name_b)(states[src_b]))
        return torch.cat(states[2:], dim=1)


class DartsNetwork(nn.Module):
    def __init__(
        self,
        cells: Mapping[str, Cell],
        in_channels: int,
        channels: int,
        layers: int,
        reductions: Sequence[int],
        stem_multiplier: int,
        num_classes: int,
        live: Sequence[bool] | None = None,
    ) -> None:
        super().__init__()
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for index in range(layers):
            reduction = index in reductions
            if reduction:
                c_curr *= 2
            alive = live is None or live[index]  # a dead cell (its output unread) keeps its index, nothing else
            self.cells.append(
                DartsCell(
                    cells["reduce" if reduction else "normal"], c_prev_prev, c_prev, c_curr, reduction, reduction_prev
                )
                if alive
                else nn.Identity()
            )
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, STEPS * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, (cell(s0, s1) if isinstance(cell, DartsCell) else None)
        return self.classifier(self.pool(s1).flatten(1))


class DartsSuperCell(nn.Module):
    """Both preprocessing layers and every op on every edge (node j, input i) of a cell, as the
    DARTS supernet has them (`n3.1.sep_conv_3x3`); forward runs the (op, input) pairs chosen."""

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.pre0 = (
            FactorizedReduce(c_prev_prev, channels) if reduction_prev else ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        )
        self.pre1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        for node in range(2, 2 + STEPS):
            edges = nn.ModuleDict()
            for source in range(node):
                stride = 2 if reduction and source < 2 else 1
                edges[str(source)] = nn.ModuleDict({op: make_op(op, channels, stride) for op in OPS})
            self.add_module(f"n{node}", edges)
        self.cell: Cell = [("none", 0)] * (2 * STEPS)

    def forward(self, s0: torch.Tensor | None, s1: torch.Tensor | None) -> torch.Tensor:
        used = {source for _, source in self.cell}  # an unread input may come from an idle cell (None)
        states = [self.pre0(s0) if 0 in used else None, self.pre1(s1) if 1 in used else None]
        for step in range(STEPS):
            node, out = 2 + step, 0
            for op, source in self.cell[2 * step : 2 * step + 2]:
                out = out + getattr(self, f"n{node}")[str(source)][op](states[source])
            states.append(out)
        return torch.cat(states[2:], dim=1)


class DartsSupernet(DartsNetwork):
    """A DartsSuperCell in every cell position. A standalone network's `cells.4.n3a.1.weight`
    is the supernet's `cells.4.n3.0.sep_conv_3x3.1.weight` when node 3's first input is a
    3x3 separable conv of input 0; cells whose output is unread compute nothing, as there."""

    def __init__(
        self, in_channels: int, channels: int, layers: int, reductions: Sequence[int], stem_multiplier: int,
        num_classes: int,
    ) -> None:  # fmt: skip
        super().__init__({}, in_channels, channels, 0, reductions, stem_multiplier, num_classes)
        c_curr = stem_multiplier * channels
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        reduction_prev = False
        for index in range(layers):
            reduction = index in reductions
            c_curr *= 2 if reduction else 1
            self.cells.append(DartsSuperCell(c_prev_prev, c_prev, c_curr, reduction, reduction_prev))
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, STEPS * c_curr
        self.classifier = nn.Linear(c_prev, num_classes)
        self.kinds = ["reduce" if index in reductions else "normal" for index in range(layers)]
        self.live = [True] * layers

    def choose(self, arch: Mapping[str, Any]) -> None:
        cells = parse_genotype(arch["genotype"])
        self.live = live_cells(cells, self.kinds)
        for cell, kind in zip(self.cells, self.kinds):
            cell.cell = list(cells[kind])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell, alive in zip(self.cells, self.live):
            s0, s1 = s1, (cell(s0, s1) if alive else None)
        return self.classifier(self.pool(s1).flatten(1))

    def source_key(self, key: str) -> str:
        parts = key.split(".")
        if parts[0] == "cells" and len(parts) > 2 and parts[2][0] == "n":
            node, side = int(parts[2][1:-1]), parts[2][-1]
            op, source = self.cells[int(parts[1])].cell[2 * (node - 2) + SIDES.index(side)]
            return ".".join([*parts[:2], f"n{node}", str(source), op, *parts[3:]])
        return key
