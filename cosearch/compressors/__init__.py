"""Compressors: pure transforms of an nn.Module by a Policy (the input is never changed)."""

from cosearch.compressors.channels import prune_channels
from cosearch.compressors.policy import bake, compress, compression_slots, layers_of_slot, size_bytes
from cosearch.compressors.prune import MagnitudeMask
from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

__all__ = ["MagnitudeMask", "PerChannelSymmetricFakeQuant", "bake", "compress", "compression_slots", "layers_of_slot", "prune_channels", "size_bytes"]
