"""Low-rank factorisation of linear / 1x1 conv layers by truncated SVD (1 = not factorised)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene, ReshapeContext


@COMPRESSORS.register("rank_ratio")
class RankRatio(Compressor):
    gene = Gene(
        scope="layer", default=1.0, search=(1.0,), kind=float,
        rule="0 < rank_ratio <= 1", allowed="a ratio with 0 < rank_ratio <= 1 (1 = not factorised)",
        check=lambda v: 0.0 < v <= 1.0, genome="rank", group="rank",
    )  # fmt: skip
    stage = 10  # structural: after channels are removed, on the layers that remain
    summary_position = 20

    def summarize(self, values: Sequence[Any]) -> str | None:
        ranks = [v for v in values if v != 1.0]
        return f"low-rank x{len(ranks)} (mean ratio {sum(ranks) / len(ranks):.2f})" if ranks else None

    def reshape(self, model: Any, policy: Any, context: ReshapeContext) -> Any:
        from cosearch.compressors.lowrank import factorize

        return factorize(model, {slot: lp[self.name] for slot, lp in policy.layers.items()})
