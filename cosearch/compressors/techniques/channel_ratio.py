"""Structured channel pruning: a share of every prunable layer's channels removed (Torch-Pruning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, ReshapeContext


@COMPRESSORS.register("channel_ratio")
class ChannelRatio(Compressor):
    gene = Gene(
        scope="network", default=0.0, search=(0.0,), kind=float,
        rule="0 <= channel_ratio <= 0.9", allowed="a share of channels with 0 <= ratio <= 0.9",
        check=lambda v: 0.0 <= v <= 0.9, genome="channel_ratio", group="channels", always_a_gene=True,
    )  # fmt: skip
    stage = 0  # structural, first: later techniques act on the layers that remain
    summary_position = 110

    def summarize(self, values: Sequence[Any]) -> str | None:
        return f"channels -{values[0]:.0%}" if values[0] else None

    def kept_channels(self, channels: int, value: float) -> int:
        return int(channels * (1 - value))  # Torch-Pruning's count, per group

    def reshape(self, model: Any, policy: Any, context: ReshapeContext) -> Any:
        from cosearch.compressors.channels import prune_channels

        ratio = policy.network[self.name]
        return prune_channels(model, ratio, context.input_shape, context.importance, context.batch)
