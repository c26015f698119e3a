"""Compression techniques as plug-ins (`COMPRESSORS`, one file each in `techniques/`), and the
pure transforms that apply a Policy to an nn.Module (the input is never changed).

Importing this package is torch-free: the genes are read by the driver; the torch-side names
below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from cosearch.compressors import techniques  # noqa: F401 - registers every technique
from cosearch.compressors.base import (
    COMPRESSORS,
    Compressor,
    Gene,
    Precision,
    ReshapeContext,
    WeightCost,
    compressors,
    genes,
    layer_precision,
    precision_genes,
    runs_integer,
    teacher_technique,
    zeroed_share,
)
from cosearch.compressors.techniques.activation_bits import CALIBRATIONS, Calibration
from cosearch.compressors.techniques.distill_alpha import Distillation

_TORCH_SIDE = {
    "ActivationFakeQuant": "activations",
    "calibrate": "activations",
    "prune_channels": "channels",
    "HashedWeights": "hashing",
    "factorize": "lowrank",
    "add_activation_quantizers": "policy",
    "bake": "policy",
    "compress": "policy",
    "compression_slots": "policy",
    "layers_of_slot": "policy",
    "recompress": "policy",
    "reshape": "policy",
    "size_bytes": "policy",
    "MagnitudeMask": "prune",
    "global_magnitude_policy": "techniques.sparsity",
    "PerChannelSymmetricFakeQuant": "quantize",
}

__all__ = [
    "CALIBRATIONS",
    "COMPRESSORS",
    "Calibration",
    "Compressor",
    "Distillation",
    "Gene",
    "Precision",
    "ReshapeContext",
    "WeightCost",
    "compressors",
    "genes",
    "layer_precision",
    "zeroed_share",
    "precision_genes",
    "runs_integer",
    "teacher_technique",
    *_TORCH_SIDE,
]


def __getattr__(name: str) -> Any:  # PEP 562: torch loads only when a transform is used
    if name in _TORCH_SIDE:
        return getattr(importlib.import_module(f"cosearch.compressors.{_TORCH_SIDE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
