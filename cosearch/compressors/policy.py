"""Apply a per-layer Policy to a model, bake it into plain weights, and account its size."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrize

from cosearch.compressors.activations import ActivationFakeQuant, add_input_quantizer
from cosearch.compressors.hashing import HashedWeights
from cosearch.compressors.prune import MagnitudeMask
from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant
from cosearch.core.candidate import FLOAT_BITS, LayerPolicy, Policy
from cosearch.core.errors import SpecError

SLOT_TYPES = (nn.Conv2d, nn.Linear)


def compression_slots(model: nn.Module) -> dict[str, nn.Module]:
    """Every conv and linear layer, by module path."""
    return {name: module for name, module in model.named_modules() if isinstance(module, SLOT_TYPES)}


def layers_of_slot(model: nn.Module, slot: str) -> dict[str, nn.Module]:
    """The conv / linear layers a policy slot governs: the module itself, or every one inside it.

    A slot may name one layer (`stem.conv`) or a block (`cells.3.n2a`, a separable conv with
    four convs); a block's layers share its policy.
    """
    modules = dict(model.named_modules())
    if slot not in modules:
        raise SpecError(
            "policy.layers", slot, f"module names of this model, e.g. {sorted(compression_slots(model))[:4]}"
        )
    if isinstance(modules[slot], SLOT_TYPES):
        return {slot: modules[slot]}
    return {f"{slot}.{name}": m for name, m in modules[slot].named_modules() if isinstance(m, SLOT_TYPES)}


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


def compress(model: nn.Module, policy: Policy, learn_activation_scales: bool = False) -> nn.Module:
    """A copy of `model` with each slot's weights shared by hashing, masked (magnitude) and
    fake-quantized, in that order, and its input fake-quantized where the policy asks
    (calibrate with `activations.calibrate` next).

    Pruning comes before quantization so scales are taken over the weights that remain.
    `learn_activation_scales` makes activation step sizes trainable (LSQ). The input model is
    not changed.
    """
    model = _private_copy(model)
    for slot, layer_policy in policy.layers.items():
        for module in layers_of_slot(model, slot).values():
            _compress_layer(module, layer_policy)
    return add_activation_quantizers(model, policy, learn_activation_scales, copy=False)


def add_activation_quantizers(
    model: nn.Module, policy: Policy, learn_scales: bool = False, copy: bool = True
) -> nn.Module:
    """(A copy of) `model` whose layers quantize their inputs where `policy` says so.

    Used alone to rebuild a baked model before loading its saved state (scales included).
    """
    model = _private_copy(model) if copy else model
    for slot, layer_policy in policy.layers.items():
        if layer_policy.activation_bits != FLOAT_BITS:
            for module in layers_of_slot(model, slot).values():
                add_input_quantizer(module, layer_policy.activation_bits, learn_scales)
    return model


def _compress_layer(module: nn.Module, layer_policy: LayerPolicy) -> None:
    if parametrize.is_parametrized(module, "weight"):
        raise SpecError("policy.layers", layer_policy, "each layer in at most one slot (these slots overlap)")
    if layer_policy.hash_ratio < 1:
        parametrize.register_parametrization(module, "weight", HashedWeights(module.weight, layer_policy.hash_ratio))
    if layer_policy.sparsity > 0:
        parametrize.register_parametrization(module, "weight", MagnitudeMask(module.weight, layer_policy.sparsity))
    if layer_policy.weight_bits != FLOAT_BITS:
        parametrize.register_parametrization(module, "weight", PerChannelSymmetricFakeQuant(layer_policy.weight_bits))


def bake(model: nn.Module) -> nn.Module:
    """A copy whose compressed weights are plain tensors and whose learnt activation step sizes
    are fixed (same outputs, no parametrizations, nothing left to train): what is exported."""
    model = _private_copy(model)
    for module in list(model.modules()):  # removing changes the module tree; walk a snapshot
        if parametrize.is_parametrized(module):
            for name in list(module.parametrizations.keys()):
                parametrize.remove_parametrizations(module, name, leave_parametrized=True)
        if isinstance(module, ActivationFakeQuant) and module.learnable:
            module.freeze()
    return model


def size_bytes(model: nn.Module, policy: Policy) -> int:
    """Deployed size of the weights under `policy`.

    A slot's weights cost `non-zeros x bits`, plus a 1-bit mask when sparse and a float32
    scale per output channel when quantized. A hashed layer costs its buckets in float32 (the
    layer rebuilds its weights from them and a seed; per-channel rounding of the rebuilt
    weights does not make the buckets integers) plus its mask. Every other parameter (biases,
    BatchNorm, which folds into per-channel scale and shift) costs 32 bits. Buffers are not counted.
    """
    plain = bake(model) if any(parametrize.is_parametrized(m) for m in model.modules()) else model
    slot_weights = {}
    for slot, layer_policy in policy.layers.items():
        for module in layers_of_slot(plain, slot).values():
            slot_weights[id(module.weight)] = (slot, layer_policy)
    bits = 0
    for param in plain.parameters():
        entry = slot_weights.get(id(param))
        if entry is None:
            bits += param.numel() * 32
            continue
        _, layer_policy = entry
        nonzero = int(torch.count_nonzero(param.detach()))
        if layer_policy.hash_ratio < 1:
            bits += HashedWeights.buckets_for(param.numel(), layer_policy.hash_ratio) * FLOAT_BITS
            bits += param.numel() if layer_policy.sparsity > 0 else 0
            continue
        if layer_policy.sparsity > 0:
            bits += nonzero * layer_policy.weight_bits + param.numel()
        else:
            bits += param.numel() * layer_policy.weight_bits
        if layer_policy.weight_bits != FLOAT_BITS:
            bits += param.shape[0] * 32
    return (bits + 7) // 8
