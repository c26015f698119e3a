"""The MobileNet space's elastic supernet (Once-for-All): one network at the largest choice of
every dimension, from which each architecture's weights are taken.

- width and expansion: the first channels of every layer (prefix slices); the expanded channels
  of each block are kept sorted by importance (`sort_channels`, between epochs), so the most
  important ones are those every narrower subnet shares;
- kernel: the centre of the 7x7 depthwise kernel, through a small learnt transform per block and
  size (7 -> 5, then 5 -> 3: a 25 x 25 and a 9 x 9 matrix, identity at first), as Once-for-All
  does, so a 3x3 kernel need not be the 7x7 one's centre as it is;
- depth: a stage's first blocks;
- structured pruning (`choose(arch, kept)`): every layer group keeps its first `kept(channels)`
  channels, which is what Torch-Pruning keeps with the "first" importance, so a pruned subnet is
  one of the prefix slices the supernet trains.

The largest network is timm's EfficientNet at the largest choices, so parameters and buffers
are stored by the names a standalone network has (`blocks.1.0.conv_dw.weight`); `path_weights`
gives a chosen architecture's weights under its standalone names as differentiable functions of
them, and `run` computes a network from such weights (compressed or not).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

KERNEL_STEPS = ((7, 5), (5, 3))  # kernel transforms, largest first: each size from the one before


def _same(x: torch.Tensor) -> torch.Tensor:
    return x


class MobileNetSupernet(nn.Module):
    def __init__(self, space: Any, input_shape, num_classes: int) -> None:
        super().__init__()
        from timm.layers import make_divisible

        from cosearch._private import timm_block_decoder

        self.space, self.make_divisible = space, make_divisible
        self.round_channels = timm_block_decoder()[1]
        largest = space.extremes()[0]
        self.net = space.build(largest, input_shape, num_classes)
        self.transforms = nn.ParameterDict(
            {
                f"{s}_{b}_{big}to{small}": nn.Parameter(torch.eye(small * small))
                for s, stage in enumerate(largest["stages"])
                for b in range(len(stage))
                for big, small in KERNEL_STEPS
            }
        )
        self.arch: Mapping[str, Any] = largest
        self.kept: Callable[[int], int] = _same

    def choose(self, arch: Mapping[str, Any], kept: Callable[[int], int] | None = None) -> None:
        """Run `arch`'s path from now on, each layer group on its first `kept(channels)` channels
        (None: all; structured pruning's count, `cosearch.search_spaces.supernet.kept_channels`)."""
        self.space.validate_arch(arch)
        self.arch, self.kept = arch, kept or _same

    # --- the chosen path's weights ----------------------------------------------------------
    def _plan(self, arch: Mapping[str, Any]) -> list[tuple[str, int, int, int, int, int, bool]]:
        """Per block of `arch`: (name, input channels, expanded channels, output channels, kernel,
        stride, residual), channels pruned as chosen (a residual sum makes a block's input and
        output one group, so they keep the same count)."""
        width, space, kept = float(arch["width"]), self.space, self.kept
        c_in, plan = self.round_channels(space.stem_channels, width), []
        for s, blocks in enumerate(arch["stages"]):
            c_out = self.round_channels(space.stage_channels[s], width)
            for b, block in enumerate(blocks):
                mid = self.make_divisible(c_in * block["expand"])
                stride = space.stage_strides[s] if b == 0 else 1
                skip = stride == 1 and c_in == c_out  # timm's has_skip
                plan.append((f"blocks.{s}.{b}", kept(c_in), kept(mid), kept(c_out), block["kernel"], stride, skip))
                c_in = c_out
        return plan

    def _kernel(self, name: str, mid: int, size: int) -> torch.Tensor:
        """The depthwise kernel of block `name` at `size`: the largest kernel's centre, transformed."""
        weight = self.net.get_parameter(f"{name}.conv_dw.weight")[:mid]
        s, b = name.split(".")[1:]
        for big, small in KERNEL_STEPS:
            if size > small:
                break
            start = (weight.shape[-1] - small) // 2
            centre = weight[:, :, start : start + small, start : start + small].reshape(mid, small * small)
            weight = (centre @ self.transforms[f"{s}_{b}_{big}to{small}"].T).reshape(mid, 1, small, small)
        return weight

    def path_weights(self) -> dict[str, torch.Tensor]:
        """Every parameter and buffer of the chosen architecture's standalone network (what
        `space.build` makes), by its name there, from the shared ones (slices share storage, so
        BatchNorm running statistics update in place)."""
        state = dict(self.net.named_parameters()) | dict(self.net.named_buffers())
        out: dict[str, torch.Tensor] = {}

        def norm(name: str, channels: int) -> None:
            for part in ("weight", "bias", "running_mean", "running_var"):
                out[f"{name}.{part}"] = state[f"{name}.{part}"][:channels]
            out[f"{name}.num_batches_tracked"] = state[f"{name}.num_batches_tracked"]

        plan = self._plan(self.arch)
        stem = plan[0][1]
        out["conv_stem.weight"] = state["conv_stem.weight"][:stem]
        norm("bn1", stem)
        for name, c_in, mid, c_out, kernel, *_ in plan:
            out[f"{name}.conv_pw.weight"] = state[f"{name}.conv_pw.weight"][:mid, :c_in]
            norm(f"{name}.bn1", mid)
            out[f"{name}.conv_dw.weight"] = self._kernel(name, mid, kernel)
            norm(f"{name}.bn2", mid)
            out[f"{name}.conv_pwl.weight"] = state[f"{name}.conv_pwl.weight"][:c_out, :mid]
            norm(f"{name}.bn3", c_out)
        head = self.kept(state["bn2.weight"].shape[0])
        out["conv_head.weight"] = state["conv_head.weight"][:head, : plan[-1][3]]
        norm("bn2", head)
        out["classifier.weight"] = state["classifier.weight"][:, :head]
        out["classifier.bias"] = state["classifier.bias"]
        return out

    # --- computing with them ------------------------------------------------------------------
    def _norm(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor], name: str) -> torch.Tensor:
        module = self.net.get_submodule(name)  # timm's BatchNormAct2d: its momentum, eps and activation
        momentum = module.momentum
        if self.training and momentum is None:  # a cumulative average, as nn.BatchNorm2d keeps one
            tracked = weights[f"{name}.num_batches_tracked"]
            tracked.add_(1)
            momentum = 1.0 / float(tracked)
        x = F.batch_norm(
            x,
            weights[f"{name}.running_mean"],
            weights[f"{name}.running_var"],
            weights[f"{name}.weight"],
            weights[f"{name}.bias"],
            self.training,
            momentum or 0.0,
            module.eps,
        )
        return module.act(x)

    def run(
        self, x: torch.Tensor, weights: Mapping[str, torch.Tensor], inputs: Mapping[str, Callable] | None = None
    ) -> torch.Tensor:
        """The chosen architecture's network on `x` with `weights` (`path_weights`, maybe compressed),
        each layer named in `inputs` (standalone name) reading its input through that function."""
        inputs = inputs or {}

        def conv(x: torch.Tensor, name: str, **how: Any) -> torch.Tensor:
            return F.conv2d(inputs.get(name, _same)(x), weights[f"{name}.weight"], **how)

        x = self._norm(conv(x, "conv_stem", stride=2, padding=1), weights, "bn1")
        for name, _, mid, _, kernel, stride, skip in self._plan(self.arch):
            shortcut = x
            x = self._norm(conv(x, f"{name}.conv_pw"), weights, f"{name}.bn1")
            padding = ((stride - 1) + (kernel - 1)) // 2  # timm's symmetric padding
            x = self._norm(
                conv(x, f"{name}.conv_dw", stride=stride, padding=padding, groups=mid), weights, f"{name}.bn2"
            )
            x = self._norm(conv(x, f"{name}.conv_pwl"), weights, f"{name}.bn3")
            if skip:
                x = x + shortcut
        x = self._norm(conv(x, "conv_head"), weights, "bn2").mean(dim=(2, 3))
        return F.linear(inputs.get("classifier", _same)(x), weights["classifier.weight"], weights["classifier.bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, self.path_weights())

    # --- between epochs ---------------------------------------------------------------------
    @torch.no_grad()
    def sort_channels(self, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Reorder every block's expanded channels by importance (the L1 norm of what each feeds
        the projection), most important first, so that fewer channels keep the ones that matter
        (Once-for-All's reorganisation of the middle weights). The network computes the same
        function after it; `optimizer`'s per-parameter state is reordered with the weights."""
        state = optimizer.state if optimizer is not None else {}
        for stage in self.net.blocks:
            for block in stage:
                order = block.conv_pwl.weight.abs().sum(dim=(0, 2, 3)).argsort(descending=True)
                tensors = [(block.conv_pw.weight, 0), (block.conv_dw.weight, 0), (block.conv_pwl.weight, 1)]
                for norm in (block.bn1, block.bn2):
                    tensors += [(norm.weight, 0), (norm.bias, 0), (norm.running_mean, 0), (norm.running_var, 0)]
                for tensor, dim in tensors:
                    tensor.copy_(tensor.index_select(dim, order))
                    for value in state.get(tensor, {}).values():
                        if torch.is_tensor(value) and value.shape == tensor.shape:
                            value.copy_(value.index_select(dim, order))
