"""Compressors: pure transforms of an nn.Module by a Policy (the input is never changed)."""

from cosearch.compressors.activations import ActivationFakeQuant, calibrate
from cosearch.compressors.channels import prune_channels
from cosearch.compressors.hashing import HashedWeights
from cosearch.compressors.lowrank import factorize
from cosearch.compressors.policy import (
    add_activation_quantizers,
    bake,
    compress,
    compression_slots,
    layers_of_slot,
    size_bytes,
)
from cosearch.compressors.prune import MagnitudeMask, global_magnitude_policy
from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

__all__ = [
    "ActivationFakeQuant",
    "HashedWeights",
    "MagnitudeMask",
    "PerChannelSymmetricFakeQuant",
    "add_activation_quantizers",
    "bake",
    "calibrate",
    "compress",
    "compression_slots",
    "factorize",
    "global_magnitude_policy",
    "layers_of_slot",
    "prune_channels",
    "reshape",
    "size_bytes",
]


def reshape(model, policy, input_shape, importance="l1", batch=None):
    """The structural part of a policy: channels pruned, then layers factorised (a copy).

    Shapes depend only on the policy, not on the importance measure or the weights, so a
    rebuilt network reshaped the same way loads the weights a trained one saved.
    """
    return factorize(prune_channels(model, policy.channel_ratio, input_shape, importance, batch), policy)
