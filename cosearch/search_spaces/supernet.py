"""Weight sharing: a space's supernet, the standalone network it gives a candidate, and the
compressed weights a supernet training step runs with.

A supernet (`SearchSpace.supernet`) is an nn.Module with the weights of every choice of its
space, and `choose(arch)`, which makes its forward run that architecture's single path. Where
a standalone network's (`SearchSpace.build`) tensors are the supernet's own (cell spaces), it
gives `source_key(name)`: where, under the chosen architecture, the standalone network's module,
parameter or buffer `name` lives in it. Where they are computed from its own (an elastic
supernet's slices), it gives `path_weights()` (the chosen path's tensors by standalone name) and
`run(x, weights, inputs)`. One that runs every layer group narrower (`SearchSpace.elastic_channels`)
takes `choose(arch, kept)`: how many of a group's channels remain (`kept_channels`).
Everything here works from those, for any space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
    if hasattr(supernet, "path_weights"):
        source = {key: tensor.detach() for key, tensor in supernet.path_weights().items()}
        model.load_state_dict({key: source[key].clone() for key in model.state_dict()})
    else:
        source = supernet.state_dict()
        model.load_state_dict({key: source[supernet.source_key(key)].clone() for key in model.state_dict()})
    return model


def _elastic(layer_policy: Any, hook: str) -> list[tuple[Any, Any]]:
    """The elastic techniques `layer_policy` turns on whose `hook` (`elastic_weight` or
    `elastic_input`) acts, with their values, in stage order (masks before quantization scales,
    as `compress` applies them)."""
    from cosearch.compressors.base import Compressor

    techniques = [
        c for c in in_stage_order("layer") if c.elastic and getattr(type(c), hook) is not getattr(Compressor, hook)
    ]
    return [(c, layer_policy[c.name]) for c in techniques if layer_policy[c.name] != c.gene.default]


def _compressed(weight: torch.Tensor, on: list[tuple[Any, Any]]) -> torch.Tensor:
    for technique, value in on:
        weight = technique.elastic_weight(weight, value)
    return weight


def _path_layers(path: Mapping[str, torch.Tensor], slot: str) -> list[str]:
    """The conv and linear layers of `slot` in an elastic supernet's path (BatchNorm's weights are vectors)."""
    return [
        k[: -len(".weight")] for k in path if k.startswith(f"{slot}.") and k.endswith(".weight") and path[k].dim() > 1
    ]


def kept_channels(policy: Any) -> Callable[[int], int] | None:
    """How many of a layer group's channels remain once `policy`'s structural techniques remove
    theirs (`Compressor.kept_channels`, in stage order); None when it turns none on."""
    on = [c for c in in_stage_order("network") if c.removes_channels and c.turned_on(policy)]
    if not on:
        return None

    def kept(channels: int) -> int:
        for technique in on:
            channels = technique.kept_channels(channels, policy.network[technique.name])
        return channels

    return kept


def elastic_weights(
    supernet: nn.Module, candidate: Candidate, path: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The weights of the chosen path that `candidate.policy` compresses, compressed: per layer,
    every elastic technique the policy turns on. By supernet name, to pass to
    `torch.func.functional_call`; an elastic supernet's by standalone name, compressed after
    slicing (from `path`, its `path_weights()`, when given), to pass to its `run`."""
    weights = {}
    for slot, layer_policy in candidate.policy.layers.items():
        on = _elastic(layer_policy, "elastic_weight")
        if not on:
            continue
        if hasattr(supernet, "path_weights"):
            path = supernet.path_weights() if path is None else path
            weights.update(
                {f"{name}.weight": _compressed(path[f"{name}.weight"], on) for name in _path_layers(path, slot)}
            )
        else:
            for name, module in layers_of_slot(supernet, supernet.source_key(slot)).items():
                weights[f"{name}.weight"] = _compressed(module.weight, on)
    return weights


def elastic_inputs(supernet: nn.Module, candidate: Candidate, path: Mapping[str, torch.Tensor] | None = None) -> dict:
    """Per layer of the chosen path whose input the policy changes (activation bits): a function
    of its input, by supernet module name (an elastic supernet's: by standalone name)."""
    inputs = {}
    for slot, layer_policy in candidate.policy.layers.items():
        on = _elastic(layer_policy, "elastic_input")
        if not on:
            continue

        def change(x: torch.Tensor, on: list = on) -> torch.Tensor:
            for technique, value in on:
                x = technique.elastic_input(x, value)
            return x

        if hasattr(supernet, "path_weights"):
            path = supernet.path_weights() if path is None else path
            inputs.update(dict.fromkeys(_path_layers(path, slot), change))
        else:
            inputs.update(dict.fromkeys(layers_of_slot(supernet, supernet.source_key(slot)), change))
    return inputs


def path_logits(supernet: nn.Module, candidate: Candidate, x: torch.Tensor) -> torch.Tensor:
    """The supernet's output on `candidate`'s path, its weights and layer inputs changed as the
    policy says (`elastic_weights`, `elastic_inputs`); gradients reach the shared weights."""
    from torch.func import functional_call

    kept = kept_channels(candidate.policy)
    if kept is None:
        supernet.choose(candidate.arch)
    else:  # structured pruning, on a supernet that runs each layer group narrower (elastic channels)
        supernet.choose(candidate.arch, kept)
    if hasattr(supernet, "path_weights"):
        path = supernet.path_weights()
        weights = {**path, **elastic_weights(supernet, candidate, path)}
        return supernet.run(x, weights, elastic_inputs(supernet, candidate, path))
    modules = dict(supernet.named_modules())
    hooks = [
        modules[name].register_forward_pre_hook(lambda module, args, change=change: (change(args[0]), *args[1:]))
        for name, change in elastic_inputs(supernet, candidate).items()
    ]
    try:
        weights = elastic_weights(supernet, candidate)
        return functional_call(supernet, weights, (x,), strict=False) if weights else supernet(x)
    finally:
        for hook in hooks:
            hook.remove()


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
    # Channels-last, training-mode BatchNorm runs about 4x faster on a CPU (a mobilenet subnet's
    # 4 batches of 64 at 32x32: 0.16 s against 0.04 s); the statistics differ only by rounding.
    model.to(memory_format=torch.channels_last)
    with torch.no_grad():
        for batch in batches:
            model(batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch)
    model.to(memory_format=torch.contiguous_format)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()
