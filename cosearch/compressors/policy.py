"""Apply a per-layer Policy to a model, bake it into plain weights, and account its size."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from cosearch.compressors.prune import MagnitudeMask
from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant
from cosearch.core.candidate import FLOAT_BITS, Policy
from cosearch.core.errors import SpecError

SLOT_TYPES = (nn.Conv2d, nn.Linear)


def compression_slots(model: nn.Module) -> dict[str, nn.Module]:
    """Every conv and linear layer, by module path: the names a Policy refers to."""
    return {name: module for name, module in model.named_modules() if isinstance(module, SLOT_TYPES)}


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy that shares nothing with `model`.

    torch's parametrize keeps each parametrized tensor as a property on a per-module class that
    a plain deepcopy shares; adding or removing one on the copy would change the original.
    """
    model = copy.deepcopy(model)
    for module in model.modules():
        if parametrize.is_parametrized(module):
            cls = module.__class__
            module.__class__ = type(cls.__name__, cls.__bases__, dict(cls.__dict__))
    return model


def compress(model: nn.Module, policy: Policy) -> nn.Module:
    """A copy of `model` with each slot's weights masked (magnitude) then fake-quantized.

    Pruning comes first so quantization scales are taken over the weights that remain.
    The input model is not changed.
    """
    model = _private_copy(model)
    slots = compression_slots(model)
    for slot, layer_policy in policy.layers.items():
        if slot not in slots:
            raise SpecError("policy.layers", slot, f"layer slots of this model: {sorted(slots)}")
        module = slots[slot]
        if layer_policy.sparsity > 0:
            parametrize.register_parametrization(module, "weight", MagnitudeMask(module.weight, layer_policy.sparsity))
        if layer_policy.weight_bits != FLOAT_BITS:
            parametrize.register_parametrization(module, "weight", PerChannelSymmetricFakeQuant(layer_policy.weight_bits))
    return model


def bake(model: nn.Module) -> nn.Module:
    """A copy whose compressed weights are plain tensors (same outputs, no parametrizations)."""
    model = _private_copy(model)
    for module in list(model.modules()):  # removing changes the module tree; walk a snapshot
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
    return model


def size_bytes(model: nn.Module, policy: Policy) -> int:
    """Deployed size of the weights under `policy`.

    A slot's weights cost `non-zeros x bits`, plus a 1-bit mask when sparse and a float32
    scale per output channel when quantized. Every other parameter (biases, BatchNorm, which
    folds into per-channel scale and shift) costs 32 bits. Buffers are not counted.
    """
    plain = bake(model) if any(parametrize.is_parametrized(m) for m in model.modules()) else model
    slots = compression_slots(plain)
    slot_weights = {id(slots[s].weight): (s, policy.get(s)) for s in slots}
    bits = 0
    for param in plain.parameters():
        entry = slot_weights.get(id(param))
        if entry is None:
            bits += param.numel() * 32
            continue
        _, layer_policy = entry
        nonzero = int(torch.count_nonzero(param.detach()))
        if layer_policy.sparsity > 0:
            bits += nonzero * layer_policy.weight_bits + param.numel()
        else:
            bits += param.numel() * layer_policy.weight_bits
        if layer_policy.weight_bits != FLOAT_BITS:
            bits += param.shape[0] * 32
    return (bits + 7) // 8
