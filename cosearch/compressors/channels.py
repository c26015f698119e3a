"""Structured channel pruning that really removes channels, across dependent layers (Torch-Pruning).

Torch-Pruning's dependency graph keeps residual sums, concatenations and depthwise convs
consistent. Pruning is per layer group, not global, so which channel counts remain depends only
on the architecture and the ratio: a rebuilt, untouched network pruned at the same ratio has
exactly the shapes of a trained, pruned one, which is how saved weights are loaded again.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

IMPORTANCES = ("l1", "l2", "taylor", "first")


def prune_channels(
    model: nn.Module,
    ratio: float,
    input_shape: Sequence[int],
    importance: str = "l1",
    batch: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> nn.Module:
    """A copy of `model` without `ratio` of the channels of every prunable layer.

    Channels are ranked by `importance`: the L1 or L2 norm of their weights, first-order
    Taylor (|weight x gradient| of the cross-entropy on `batch`, images and labels; Molchanov
    et al. 2019), or their order ("first": each group keeps its first channels, for weights
    already sorted by importance, as an elastic supernet's are: the pruned network is then the
    one the supernet trained at this ratio). Every group keeps int(channels * (1 - ratio)).
    Layers that produce the network's output, and those inside a module with
    `structured_pruning = False`, keep their output channels. The input model is not changed.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"`0 <= ratio < 1` must hold, but got {ratio=}")
    if importance not in IMPORTANCES:
        raise ValueError(f"`importance in {IMPORTANCES}` must hold, but got {importance=}")
    if importance == "taylor" and batch is None:
        raise ValueError("Taylor importance needs a batch of (images, labels) to take gradients on")
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
    # A module may opt out (`structured_pruning = False`) when its pruned shapes would depend on weights.
    heads += [
        m
        for block in model.modules()
        if getattr(block, "structured_pruning", True) is False
        for m in block.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    if importance == "first":
        scorer = _first_channels()
    elif importance == "taylor":
        scorer = tp.importance.TaylorImportance()
    else:
        scorer = tp.importance.MagnitudeImportance(p=1 if importance == "l1" else 2)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=scorer, pruning_ratio=ratio, ignored_layers=heads)
    if importance == "taylor":
        images, labels = batch
        model.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
    pruner.step()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return model


def _first_channels():
    """A Torch-Pruning importance whose scores fall with the channel index: each group keeps its
    first channels (a class made here, as torch_pruning is imported only to prune)."""
    import torch_pruning as tp

    class FirstChannels(tp.importance.Importance):
        def __call__(self, group, **kwargs) -> torch.Tensor:
            _, idxs = group[0]
            return -torch.as_tensor(idxs, dtype=torch.float32)

    return FirstChannels()
