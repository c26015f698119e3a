"""Apply a per-layer Policy to a model, bake it into plain weights, and account its size."""

from __future__ import annotations

import copy

from torch import nn
from torch.nn.utils import parametrize

from cosearch.compressors.activations import ActivationFakeQuant
from cosearch.compressors.base import ReshapeContext, WeightCost, in_stage_order
from cosearch.core.candidate import Policy
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


def reshape(
    model: nn.Module, policy: Policy, input_shape, importance: str = "l1", batch=None, copy: bool = True
) -> nn.Module:
    """The structural part of a policy (channels pruned, then layers factorised): a copy, or
    with `copy` False (a model the caller no longer needs) `model` itself where nothing changes.

    Shapes depend only on the policy, not on the importance measure or the weights, so a
    rebuilt network reshaped the same way loads the weights a trained one saved.
    """
    context = ReshapeContext(input_shape, importance, batch)
    shaped = model
    for compressor in in_stage_order():
        if compressor.turned_on(policy):  # a structural change copies; the rest return the model itself
            shaped = compressor.reshape(shaped, policy, context)
    return shaped if shaped is not model or not copy else _private_copy(model)


def compress(model: nn.Module, policy: Policy, learn_activation_scales: bool = False, copy: bool = True) -> nn.Module:
    """A copy of `model` with each slot's layers transformed by every technique the policy turns
    on, in stage order (weights shared by hashing, masked, fake-quantized; then inputs
    fake-quantized; calibrate with `activations.calibrate` next).

    `learn_activation_scales` makes activation step sizes trainable (LSQ). The input model is
    not changed, unless `copy` is False (for a model the caller made and no longer needs).
    """
    model = _private_copy(model) if copy else model
    return _apply(model, policy, learn_activation_scales, in_stage_order("layer"), once=True)


def add_activation_quantizers(
    model: nn.Module, policy: Policy, learn_scales: bool = False, copy: bool = True
) -> nn.Module:
    """(A copy of) `model` with the modules of the techniques that a baked model lacks (input
    quantizers), so its saved state (scales included) loads back."""
    model = _private_copy(model) if copy else model
    return _apply(model, policy, learn_scales, [c for c in in_stage_order("layer") if c.rebuilds_for_loading()])


def recompress(model: nn.Module, policy: Policy) -> nn.Module:
    """A copy of a baked (loaded) model with its weights back under the policy's weight transforms
    (shared buckets, masks, grids), so that training it further keeps them compressed. On baked
    weights these transforms change nothing: the mask keeps the zeros, the grid its own values."""
    weights = [c for c in in_stage_order("layer") if not c.rebuilds_for_loading()]
    return _apply(_private_copy(model), policy, False, weights, once=True)


def _apply(model: nn.Module, policy: Policy, learn: bool, techniques, once: bool = False) -> nn.Module:
    for slot, layer_policy in policy.layers.items():
        for module in layers_of_slot(model, slot).values():
            if once and parametrize.is_parametrized(module, "weight"):
                raise SpecError("policy.layers", layer_policy, "each layer in at most one slot (these slots overlap)")
            for compressor in techniques:
                value = layer_policy[compressor.name]
                if value != compressor.gene.default:
                    compressor.apply(module, value, learn)
    return model


def bake(model: nn.Module, copy: bool = True) -> nn.Module:
    """A copy (`model` itself where `copy` is False) whose compressed weights are plain tensors and
    whose learnt activation step sizes are fixed (same outputs, no parametrizations, nothing left
    to train): what is exported."""
    model = _private_copy(model) if copy else model
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
            slot_weights[id(module.weight)] = layer_policy
    techniques = in_stage_order("layer")
    bits = 0
    for param in plain.parameters():
        cost = WeightCost(param.numel())
        layer_policy = slot_weights.get(id(param))
        for compressor in techniques if layer_policy is not None else ():
            value = layer_policy[compressor.name]
            if value != compressor.gene.default:
                cost = compressor.weight_cost(value, param.detach(), cost)
        bits += cost.bits
    return (bits + 7) // 8
