"""Low-rank factorisation of linear and 1x1 conv layers by truncated SVD.

A layer W (out x in) at rank ratio r becomes two: V (rank x in) then U (rank -> out, with the
bias), rank = max(1, round(r * min(in, out))), initialised from the top singular vectors so
the product is the best rank-`rank` approximation of W (Eckart-Young). The pair replaces the
layer under the same name (an `nn.Sequential` of `0` and `1`), so the policy slot still names it
and the weight techniques after it (bits, masks) apply to both factors. Layers where it would not save weights
(rank * (in + out) >= in * out) and other kinds (k x k, grouped convs) are left as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import nn


def factorizable(module: nn.Module) -> bool:
    if isinstance(module, nn.Linear):
        return True
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and module.groups == 1
        and module.stride == (1, 1)
        and module.padding in ((0, 0), 0, "valid")
    )


def rank_for(module: nn.Module, ratio: float) -> int | None:
    """The rank a layer gets at `ratio`, or None when factorising would not shrink it."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"`0 < ratio <= 1` must hold, but got {ratio=}")
    if ratio == 1.0 or not factorizable(module):
        return None
    out_features, in_features = module.weight.shape[0], module.weight.shape[1]
    rank = max(1, round(ratio * min(out_features, in_features)))
    return rank if rank * (in_features + out_features) < in_features * out_features else None


def factorize_layer(module: nn.Module, rank: int) -> nn.Sequential:
    """Two layers whose product is the best rank-`rank` approximation of `module`."""
    weight = module.weight.detach().reshape(module.weight.shape[0], -1)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    root = s[:rank].sqrt()
    first_weight, second_weight = root[:, None] * vh[:rank], u[:, :rank] * root[None, :]
    has_bias = module.bias is not None
    if isinstance(module, nn.Linear):
        # A zero bias on the first factor: without one the ONNX exporter writes MatMul with a
        # transposed, renamed weight, which int8 storage could not find by name.
        first, second = nn.Linear(weight.shape[1], rank, bias=True), nn.Linear(rank, weight.shape[0], bias=has_bias)
    else:
        first, second = (
            nn.Conv2d(weight.shape[1], rank, 1, bias=False),
            nn.Conv2d(rank, weight.shape[0], 1, bias=has_bias),
        )
    with torch.no_grad():
        first.weight.copy_(first_weight.reshape(first.weight.shape))
        second.weight.copy_(second_weight.reshape(second.weight.shape))
        if first.bias is not None:
            first.bias.zero_()
        if has_bias:
            second.bias.copy_(module.bias)
    return nn.Sequential(first, second).train(module.training)


def factorize(model: nn.Module, ratios: Mapping[str, float]) -> nn.Module:
    """A copy of `model` with each slot's eligible layers factorised at its rank ratio (slot -> ratio).

    A structural change like channel pruning: the same policy on a rebuilt network gives the
    same shapes, so saved weights load back. The input model is not changed.
    """
    from cosearch.compressors.policy import layers_of_slot

    model = copy.deepcopy(model)
    modules = dict(model.named_modules())
    for slot, ratio in ratios.items():
        for name, module in layers_of_slot(model, slot).items():
            rank = rank_for(module, ratio)
            if rank is None:
                continue
            parent_name, _, child = name.rpartition(".")
            setattr(modules[parent_name] if parent_name else model, child, factorize_layer(module, rank))
    return model
