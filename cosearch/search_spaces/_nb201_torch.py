"""PyTorch modules of the NAS-Bench-201 network; module names equal the space's layer slots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from cosearch.search_spaces.nb201 import EDGES, NUM_NODES, OPS, edge_name, parse_arch_str


class ReLUConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride=stride, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.relu(x)))


def make_op(op: str, channels: int) -> nn.Module:
    if op == "skip_connect":
        return nn.Identity()
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    if op == "nor_conv_1x1":
        return ReLUConvBN(channels, channels, 1)
    if op == "nor_conv_3x3":
        return ReLUConvBN(channels, channels, 3)
    raise ValueError(f"no module for op {op!r}")


class Cell(nn.Module):
    """node_j = sum_i op_ij(node_i); `none` edges are not built at all."""

    def __init__(self, ops: Mapping[tuple[int, int], str], channels: int) -> None:
        super().__init__()
        self.edges = [(i, j) for i, j in EDGES if ops[(i, j)] != "none"]
        for i, j in self.edges:
            self.add_module(edge_name(i, j), make_op(ops[(i, j)], channels))

    def op(self, i: int, j: int) -> nn.Module:
        return getattr(self, edge_name(i, j))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes: list[torch.Tensor | None] = [x] + [None] * (NUM_NODES - 1)
        for i, j in self.edges:  # EDGES order: every input of node j comes before node j is read
            source = nodes[i]
            if source is None:
                continue
            out = self.op(i, j)(source)
            nodes[j] = out if nodes[j] is None else nodes[j] + out
        output = nodes[-1]
        return output if output is not None else x * 0.0


class SuperCell(Cell):
    """Every op on every edge (`e0_1.nor_conv_3x3`, ...); forward runs the ops `set_ops` chose."""

    def __init__(self, ops: Mapping[tuple[int, int], str] | None, channels: int) -> None:
        nn.Module.__init__(self)
        for i, j in EDGES:
            self.add_module(edge_name(i, j), nn.ModuleDict({op: make_op(op, channels) for op in OPS if op != "none"}))
        self.set_ops(dict.fromkeys(EDGES, "none") if ops is None else ops)

    def set_ops(self, ops: Mapping[tuple[int, int], str]) -> None:
        self.ops = dict(ops)
        self.edges = [(i, j) for i, j in EDGES if ops[(i, j)] != "none"]

    def op(self, i: int, j: int) -> nn.Module:
        return getattr(self, edge_name(i, j))[self.ops[(i, j)]]


class ResidualReduction(nn.Module):
    """The benchmark's reduction block: two 3x3 ReLUConvBN (stride 2, then 1) plus a pooled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential()
        self.shortcut.add_module("pool", nn.AvgPool2d(2, stride=2, ceil_mode=True))
        self.shortcut.add_module("conv", nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class ConvBN(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class NB201Network(nn.Module):
    def __init__(
        self,
        ops: Mapping[tuple[int, int], str],
        in_channels: int,
        channels: int,
        cells_per_stage: int,
        num_classes: int,
        cell: type[Cell] = Cell,
    ) -> None:
        super().__init__()
        self.stem = ConvBN(in_channels, channels)
        widths = (channels, channels * 2, channels * 4)
        self.stage0 = nn.Sequential(*[cell(ops, widths[0]) for _ in range(cells_per_stage)])
        self.reduce1 = ResidualReduction(widths[0], widths[1])
        self.stage1 = nn.Sequential(*[cell(ops, widths[1]) for _ in range(cells_per_stage)])
        self.reduce2 = ResidualReduction(widths[1], widths[2])
        self.stage2 = nn.Sequential(*[cell(ops, widths[2]) for _ in range(cells_per_stage)])
        self.head = nn.Sequential(nn.BatchNorm2d(widths[2]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(widths[2], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.stage2(self.reduce2(self.stage1(self.reduce1(self.stage0(x)))))
        return self.classifier(self.head(x))


class NB201Supernet(NB201Network):
    """The network with a SuperCell in every cell position: the weights of all 15,625 cells.

    Single-path (SPOS): every cell runs the one cell of the arch `choose` set. A standalone
    network's `stage0.1.e0_2.conv.weight` is the supernet's `stage0.1.e0_2.nor_conv_3x3.conv.weight`
    when that edge is a 3x3 conv; everything outside cells has the same name in both.
    """

    def __init__(self, in_channels: int, channels: int, cells_per_stage: int, num_classes: int) -> None:
        super().__init__(None, in_channels, channels, cells_per_stage, num_classes, cell=SuperCell)  # type: ignore[arg-type]
        self.arch_ops: dict[tuple[int, int], str] = {}

    def choose(self, arch: Mapping[str, Any]) -> None:
        ops = parse_arch_str(arch["cell"])
        self.arch_ops = ops
        for module in self.modules():
            if isinstance(module, SuperCell):
                module.set_ops(ops)

    def source_key(self, key: str) -> str:
        """The supernet's name for a standalone network's module, parameter or buffer `key`, under the chosen cell."""
        parts = key.split(".")
        if parts[0].startswith("stage") and len(parts) > 3:
            i, j = (int(n) for n in parts[2][1:].split("_"))
            return ".".join([*parts[:3], self.arch_ops[(i, j)], *parts[3:]])
        return key
