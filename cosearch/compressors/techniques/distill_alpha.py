"""Distillation: the weight of a teacher's soft labels in the training loss (0 = none).

A training-time technique: it changes how a network is trained, not the network, so it has no
hooks on the model; the train evaluator reads it, and the run prepares a teacher when any is > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene


@COMPRESSORS.register("distill_alpha")
class DistillAlpha(Compressor):
    gene = Gene(
        scope="network", default=0.0, search=(0.0,), kind=float,
        rule="0 <= distill_alpha <= 1", allowed="a weight with 0 <= alpha <= 1", check=lambda v: 0.0 <= v <= 1.0,
        genome="distill_alpha", group="distill", always_a_gene=True,
    )  # fmt: skip
    needs_teacher = True
    summary_position = 100

    def summarize(self, values: Sequence[Any]) -> str | None:
        return f"distill {values[0]:g}" if values[0] else None
