"""The ENAS macro space (Pham et al., 2018): a chain of layers, each one op plus skip connections.

Layer i applies one of 6 ops to layer i-1's output and adds the outputs of any chosen earlier
layers (as in the ENAS code's `add_n`). Channels stay constant; the resolution halves after
the layers at 1/3 and 2/3 of the depth (parameter-free average pooling, applied to skip inputs
from higher resolutions too). Arch: `{"ops": [op per layer], "skips": [[earlier layers] per layer]}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from cosearch.core.errors import SpecError
from cosearch.search_spaces.base import MAX_CHANNELS, MAX_DEPTH, SEARCH_SPACES, Choice, Form, Sample, SearchSpace

OPS = ("conv_3x3", "conv_5x5", "sep_conv_3x3", "sep_conv_5x5", "max_pool_3x3", "avg_pool_3x3")
PARAM_OPS = OPS[:4]


@SEARCH_SPACES.register("enas")
class EnasMacroSpace(SearchSpace):
    def __init__(
        self,
        channels: Annotated[int, Field(ge=1, le=MAX_CHANNELS)] = 16,
        layers: Annotated[int, Field(ge=2, le=MAX_DEPTH)] = 6,
    ) -> None:
        self.channels, self.layers = channels, layers
        self.pool_after = sorted({layers // 3 - 1, 2 * layers // 3 - 1} - {-1})

    def choices(self) -> list[Choice]:
        out = []
        for i in range(self.layers):
            out.append(Choice(f"layer{i}.op", OPS))
            out += [Choice(f"layer{i}.skip{j}", (0, 1)) for j in range(i - 1)]  # i-1 is the input already
        return out

    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "ops": [sample[f"layer{i}.op"] for i in range(self.layers)],
            "skips": [[j for j in range(i - 1) if sample[f"layer{i}.skip{j}"]] for i in range(self.layers)],
        }

    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        sample: Sample = {}
        for i, (op, skips) in enumerate(zip(arch["ops"], arch["skips"])):
            sample[f"layer{i}.op"] = op
            sample.update({f"layer{i}.skip{j}": int(j in skips) for j in range(i - 1)})
        return sample

    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        if set(arch) != {"ops", "skips"}:
            raise SpecError("arch", sorted(arch), "exactly the keys 'ops' and 'skips'")
        ops, skips = arch["ops"], arch["skips"]
        if not isinstance(ops, list) or len(ops) != self.layers:
            raise SpecError("arch.ops", ops, f"a list of {self.layers} ops")
        for i, op in enumerate(ops):
            if op not in OPS:
                raise SpecError(f"arch.ops[{i}]", op, f"one of {list(OPS)}")
        if not isinstance(skips, list) or len(skips) != self.layers:
            raise SpecError("arch.skips", skips, f"a list of {self.layers} lists of earlier layers")
        for i, chosen in enumerate(skips):
            if (
                not isinstance(chosen, list)
                or sorted(set(chosen)) != chosen
                or any(not isinstance(j, int) or not 0 <= j < i - 1 for j in chosen)
            ):
                raise SpecError(
                    f"arch.skips[{i}]", chosen, f"sorted distinct layers from 0..{i - 2} (layer {i - 1} is its input)"
                )

    def all_slots(self) -> list[str]:
        return ["stem.conv"] + [f"layers.{i}" for i in range(self.layers)] + ["classifier"]

    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        return [
            s for s in self.all_slots() if not s.startswith("layers.") or arch["ops"][int(s.split(".")[1])] in PARAM_OPS
        ]

    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        return [Form(dict(arch), {s: s for s in self.all_slots()})]  # a chain: no two writings of one network

    def describe(self, arch: Mapping[str, Any]) -> str:
        return " > ".join(op + (f"+{skips}" if skips else "") for op, skips in zip(arch["ops"], arch["skips"]))

    def diagram(self, arch: Mapping[str, Any]) -> list[tuple[str, Any]]:
        import networkx as nx

        graph = nx.DiGraph()
        graph.add_node("stem")
        previous = "stem"
        for i, op in enumerate(arch["ops"]):
            graph.add_node(i, label=f"{i}: {op}")
            graph.add_edge(previous, i)
            graph.add_edges_from((j, i, {"op": "skip"}) for j in arch["skips"][i])
            previous = i
        graph.add_edge(previous, "classifier")
        return [("layers (skip connections summed into a layer's input)", graph)]

    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._enas_torch import EnasMacroNetwork

        self.validate_arch(arch)
        return EnasMacroNetwork(
            arch["ops"], arch["skips"], int(input_shape[0]), self.channels, self.pool_after, num_classes
        )

    def supernet(self, input_shape: Sequence[int], num_classes: int) -> Any:
        from cosearch.search_spaces._enas_torch import EnasSupernet

        return EnasSupernet(self.layers, int(input_shape[0]), self.channels, self.pool_after, num_classes)
