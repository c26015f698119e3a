"""Structured channel pruning that really removes channels, across dependent layers (Torch-Pruning).

Torch-Pruning's dependency graph keeps residual sums, concatenations and depthwise convs
consistent. Pruning is per layer group, not global, so which channel counts remain depends only
on the architecture and the ratio: a rebuilt, untouched network pruned at the same ratio has
exactly the shapes of a trained, pruned one, which is how saved weights are loaded again.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


def prune_channels(model: nn.Module, ratio: float, input_shape: Sequence[int]) -> nn.Module:
    """A copy of `model` without `ratio` of the channels of every prunable layer (L1 magnitude).

    Layers that produce the network's output are left whole. The input model is not changed.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"`0 <= channel_ratio < 1` must hold, but got {ratio=}")
    model = copy.deepcopy(model)
    if ratio == 0.0:
        return model
    import torch_pruning as tp

    was_training = model.training
    model.eval()
    example = torch.zeros(1, *input_shape)
    with torch.no_grad():
        outputs = model(example).shape[-1]
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == outputs]
    pruner = tp.pruner.MagnitudePruner(
        model, example, importance=tp.importance.MagnitudeImportance(p=1), pruning_ratio=ratio, ignored_layers=heads
    )
    pruner.step()
    model.train(was_training)
    return model
