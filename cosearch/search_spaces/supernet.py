"""Weight sharing: a space's supernet, the standalone network it gives a candidate, and the
compressed weights a supernet training step runs with.

A supernet (`SearchSpace.supernet`) is an nn.Module with the weights of every choice of its
space and two methods: `choose(arch)` makes its forward run that architecture's single path,
and `source_key(name)` says where, under the chosen architecture, the module, parameter or
buffer `name` of the standalone network (`SearchSpace.build`) lives in it. Everything here
works from those two, for any space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from cosearch.compressors.base import in_stage_order
from cosearch.compressors.policy import layers_of_slot
from cosearch.core.candidate import Candidate


def extract(
    space: Any,
    supernet: nn.Module,
    arch: Mapping[str, Any],
    input_shape: Sequence[int],
    num_classes: int,
    into: nn.Module | None = None,
) -> nn.Module:
    """The standalone network of `arch` (what the `train` evaluator builds) with the supernet's
    weights; `into`: that network already built, to load them into."""
    model = space.build(arch, input_shape, num_classes) if into is None else into
    supernet.choose(arch)
    source = supernet.state_dict()
    model.load_state_dict({key: source[supernet.source_key(key)].clone() for key in model.state_dict()})
    return model


def elastic_weights(supernet: nn.Module, candidate: Candidate) -> dict[str, torch.Tensor]:
    """The weights of the chosen path as `candidate.policy` compresses them, by supernet name:
    per layer, every elastic technique the policy turns on, in stage order (masks before
    quantization scales, as `compress` applies them). Pass to `torch.func.functional_call`."""
    techniques = [c for c in in_stage_order("layer") if c.elastic]
    weights = {}
    for slot, layer_policy in candidate.policy.layers.items():
        on = [(c, layer_policy[c.name]) for c in techniques if layer_policy[c.name] != c.gene.default]
        if not on:
            continue
        for name, module in layers_of_slot(supernet, supernet.source_key(slot)).items():
            weight = module.weight
            for technique, value in on:
                weight = technique.elastic_weight(weight, value)
            weights[f"{name}.weight"] = weight
    return weights


def recalibrate_batchnorm(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Replace every BatchNorm's running statistics by their plain average over `batches`.

    A supernet's statistics mix every path it trained; each subnet needs its own (SPOS,
    Once-for-All). Gradients and weights are untouched; the model is left in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
