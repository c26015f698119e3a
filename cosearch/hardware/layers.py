"""The conv and linear layers of a model with their shapes, MACs and bits: what BitOps and
accelerator models are computed from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cosearch.compressors.base import Precision, layer_precision
from cosearch.core.candidate import Policy

FLOAT = Precision()


@dataclass(frozen=True)
class LayerShape:
    """One conv (a linear layer is a 1x1 conv on a 1x1 image) as it runs, batch 1."""

    name: str
    in_channels: int
    out_channels: int
    in_size: int  # input height (square inputs)
    kernel: int
    stride: int
    padding: int
    groups: int
    out_size: int
    precision: Precision = FLOAT  # of its weights and its input

    @property
    def macs(self) -> int:
        per_output = self.kernel * self.kernel * self.in_channels // self.groups
        return self.out_channels * self.out_size * self.out_size * per_output

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.in_channels


def layer_shapes(model: Any, input_shape: Sequence[int], policy: Policy | None = None) -> list[LayerShape]:
    """Every Conv2d / Linear of `model` in call order, from one forward pass of a zero image."""
    import torch
    from torch import nn

    from cosearch.compressors import layers_of_slot

    precisions: dict[str, Precision] = {}
    for slot, layer_policy in policy.layers.items() if policy else ():
        for name in layers_of_slot(model, slot):
            precisions[name] = layer_precision(layer_policy)
    shapes: list[LayerShape] = []

    def hook(name: str):
        def record(module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            if isinstance(module, nn.Conv2d):
                k, s, p = module.kernel_size[0], module.stride[0], module.padding[0]
                if not isinstance(p, int):  # padding="same"
                    p = (k - 1) // 2
                shapes.append(
                    LayerShape(
                        name,
                        module.in_channels,
                        module.out_channels,
                        int(x.shape[-1]),
                        k,
                        s,
                        p,
                        module.groups,
                        int(output.shape[-1]),
                        precisions.get(name, FLOAT),
                    )
                )
            else:
                shapes.append(
                    LayerShape(
                        name,
                        module.in_features,
                        module.out_features,
                        1,
                        1,
                        1,
                        0,
                        1,
                        1,
                        precisions.get(name, FLOAT),
                    )
                )

        return record

    handles = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return shapes


def bitops(layers: Sequence[LayerShape]) -> float:
    """Sum over layers of MACs x weight bits x input bits (float counts as 32 bits)."""
    return float(sum(layer.macs * layer.precision.weights * layer.precision.inputs for layer in layers))
