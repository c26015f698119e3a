"""Compressors: pure transforms of an nn.Module by a Policy (the input is never changed)."""

from cosearch.compressors.activations import ActivationFakeQuant, calibrate
from cosearch.compressors.channels import prune_channels
from cosearch.compressors.policy import add_activation_quantizers, bake, compress, compression_slots, layers_of_slot, size_bytes
from cosearch.compressors.prune import MagnitudeMask
from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

__all__ = ["ActivationFakeQuant", "add_activation_quantizers", "calibrate", "MagnitudeMask", "PerChannelSymmetricFakeQuant", "bake", "compress", "compression_slots", "layers_of_slot", "prune_channels", "size_bytes"]
