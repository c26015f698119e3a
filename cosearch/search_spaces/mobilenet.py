"""A MobileNet-style elastic space (Once-for-All / MnasNet kind), built with timm's EfficientNet.

Per stage a depth; per block a depthwise kernel {3, 5, 7} and an expansion ratio {3, 4, 6};
one width multiplier for the network. The arch becomes a timm `arch_def`
(`ir_r1_k5_s2_e6_c40` per block) and is built by `timm.models.efficientnet.EfficientNet`,
so the result is the model a timm user knows: `conv_stem`, `blocks.S.B.conv_pw / conv_dw /
conv_pwl`, `conv_head`, `classifier`. Arch: `{"width": 1.0, "stages": [[{"kernel": 3, "expand": 4}, ...], ...]}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cosearch._private import timm_block_decoder
from cosearch.core.errors import SpecError
from cosearch.search_spaces.base import SEARCH_SPACES, Choice, Form, Sample, SearchSpace

KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)


@SEARCH_SPACES.register("mobilenet")
class MobileNetSpace(SearchSpace):
    """`stage_channels` and `stage_strides` fix the skeleton; `depths`, `widths` are the elastic choices."""

    elastic_channels = True

    def __init__(
        self,
        stage_channels: Sequence[int] = (16, 24, 40, 80),
        stage_strides: Sequence[int] = (1, 2, 2, 1),
        depths: Sequence[int] = (1, 2, 3),
        widths: Sequence[float] = (0.5, 0.75, 1.0),
        stem_channels: int = 16,
        head_channels: int = 256,
    ) -> None:
        if len(stage_channels) != len(stage_strides) or not stage_channels:
            raise SpecError(
                "search_space.stage_strides", list(stage_strides), f"one stride per stage ({len(stage_channels)})"
            )
        if any(not isinstance(d, int) or d < 1 for d in depths) or not depths:
            raise SpecError("search_space.depths", list(depths), "integers >= 1")
        if any(not 0 < w <= 4 for w in widths) or not widths:
            raise SpecError("search_space.widths", list(widths), "multipliers in (0, 4]")
        self.stage_channels, self.stage_strides = tuple(stage_channels), tuple(stage_strides)
        self.depths, self.widths = tuple(sorted(depths)), tuple(widths)
        self.stem_channels, self.head_channels = stem_channels, head_channels
        self.max_depth = max(self.depths)

    def choices(self) -> list[Choice]:
        out = [Choice("width", self.widths)]
        for s in range(len(self.stage_channels)):
            out.append(Choice(f"stage{s}.depth", self.depths))
            for b in range(self.max_depth):
                out += [Choice(f"stage{s}.block{b}.kernel", KERNELS), Choice(f"stage{s}.block{b}.expand", EXPANDS)]
        return out

    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        stages = []
        for s in range(len(self.stage_channels)):
            depth = sample[f"stage{s}.depth"]
            stages.append(
                [
                    {"kernel": sample[f"stage{s}.block{b}.kernel"], "expand": sample[f"stage{s}.block{b}.expand"]}
                    for b in range(depth)
                ]
            )
        return {"width": sample["width"], "stages": stages}

    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        sample: Sample = {"width": arch["width"]}
        for s, blocks in enumerate(arch["stages"]):
            sample[f"stage{s}.depth"] = len(blocks)
            for b in range(self.max_depth):
                block = blocks[b] if b < len(blocks) else {"kernel": KERNELS[0], "expand": EXPANDS[0]}
                sample[f"stage{s}.block{b}.kernel"], sample[f"stage{s}.block{b}.expand"] = (
                    block["kernel"],
                    block["expand"],
                )
        return sample

    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        if set(arch) != {"width", "stages"}:
            raise SpecError("arch", sorted(arch), "exactly the keys 'width' and 'stages'")
        if arch["width"] not in self.widths:
            raise SpecError("arch.width", arch["width"], f"one of {list(self.widths)}")
        stages = arch["stages"]
        if not isinstance(stages, list) or len(stages) != len(self.stage_channels):
            raise SpecError("arch.stages", stages, f"a list of {len(self.stage_channels)} stages")
        for s, blocks in enumerate(stages):
            if not isinstance(blocks, list) or len(blocks) not in self.depths:
                raise SpecError(f"arch.stages[{s}]", blocks, f"a list of blocks, as many as one of {list(self.depths)}")
            for b, block in enumerate(blocks):
                if (
                    not isinstance(block, dict)
                    or block.get("kernel") not in KERNELS
                    or block.get("expand") not in EXPANDS
                    or len(block) != 2
                ):
                    raise SpecError(
                        f"arch.stages[{s}][{b}]",
                        block,
                        f"{{kernel: one of {list(KERNELS)}, expand: one of {list(EXPANDS)}}}",
                    )

    def all_slots(self) -> list[str]:
        blocks = [f"blocks.{s}.{b}" for s in range(len(self.stage_channels)) for b in range(self.max_depth)]
        return ["conv_stem", *blocks, "conv_head", "classifier"]

    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        blocks = [f"blocks.{s}.{b}" for s, stage in enumerate(arch["stages"]) for b in range(len(stage))]
        return ["conv_stem", *blocks, "conv_head", "classifier"]

    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        return [Form(dict(arch), {s: s for s in self.all_slots()})]

    def arch_def(self, arch: Mapping[str, Any]) -> list[list[str]]:
        """timm's block strings, one list per stage."""
        return [
            [
                f"ir_r1_k{blk['kernel']}_s{stride if b == 0 else 1}_e{blk['expand']}_c{channels}"
                for b, blk in enumerate(blocks)
            ]
            for blocks, channels, stride in zip(arch["stages"], self.stage_channels, self.stage_strides)
        ]

    def describe(self, arch: Mapping[str, Any]) -> str:
        stages = " ".join(
            "[" + ",".join(f"k{b['kernel']}e{b['expand']}" for b in blocks) + "]" for blocks in arch["stages"]
        )
        return f"w{arch['width']} {stages}"

    def diagram(self, arch: Mapping[str, Any]) -> list[tuple[str, Any]]:
        import networkx as nx

        graph = nx.DiGraph()
        chain = ["conv_stem"]
        for s, blocks in enumerate(arch["stages"]):
            for b, block in enumerate(blocks):
                name = f"blocks.{s}.{b}"
                graph.add_node(name, label=f"{name}: k{block['kernel']} e{block['expand']}")
                chain.append(name)
        nx.add_path(graph, [*chain, "conv_head", "classifier"])
        return [(f"inverted-residual blocks, width x{arch['width']}", graph)]

    def extremes(self) -> tuple[dict[str, Any], dict[str, Any]]:
        largest = {"kernel": max(KERNELS), "expand": max(EXPANDS)}
        smallest = {"kernel": min(KERNELS), "expand": min(EXPANDS)}

        def uniform(width: float, depth: int, block: dict[str, int]) -> dict[str, Any]:
            return {"width": width, "stages": [[dict(block) for _ in range(depth)] for _ in self.stage_channels]}

        return uniform(max(self.widths), max(self.depths), largest), uniform(
            min(self.widths), min(self.depths), smallest
        )

    def supernet(self, input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._mobilenet_torch import MobileNetSupernet

        return MobileNetSupernet(self, input_shape, num_classes)

    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        from functools import partial

        from timm.models.efficientnet import EfficientNet

        self.validate_arch(arch)
        decode_arch_def, round_channels = timm_block_decoder()
        width = float(arch["width"])
        return EfficientNet(
            block_args=decode_arch_def(self.arch_def(arch)),
            num_classes=num_classes,
            in_chans=int(input_shape[0]),
            stem_size=round_channels(self.stem_channels, width),
            num_features=self.head_channels,
            round_chs_fn=partial(round_channels, multiplier=width),
            fix_stem=True,
        )
