"""Activation quantization: a layer's input fake-quantized per tensor at 4 or 8 bits (32 = float)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

from cosearch.compressors.base import COMPRESSORS, Compressor, Gene

FLOAT_BITS = 32
ACTIVATION_BITS = (4, 8, FLOAT_BITS)
QUANTIZED_BITS = tuple(b for b in ACTIVATION_BITS if b != FLOAT_BITS)
Calibration = Literal["minmax", "percentile", "mse", "kl"]  # how activation ranges are chosen (the job's option)
CALIBRATIONS: tuple[str, ...] = get_args(Calibration)


@COMPRESSORS.register("activation_bits")
class ActivationBits(Compressor):
    gene = Gene(
        scope="layer", default=FLOAT_BITS, search=(FLOAT_BITS,), kind=int,
        rule=f"activation_bits in {ACTIVATION_BITS}", allowed="4, 8, or 32 for float",
        check=lambda v: not isinstance(v, bool) and v in ACTIVATION_BITS, genome="abits", group="activation_bits",
    )  # fmt: skip
    precision_of = "inputs"
    stage = 50  # on the layer's input, after its weights
    summary_position = 10

    def summarize(self, values: Sequence[Any]) -> str | None:
        counts: dict[int, int] = {}
        for bits in values:
            if bits != FLOAT_BITS:
                counts[bits] = counts.get(bits, 0) + 1
        return " ".join(f"a{b}x{n}" for b, n in sorted(counts.items())) or None

    def apply(self, module: Any, value: int, learn: bool) -> None:
        from cosearch.compressors.activations import add_input_quantizer

        add_input_quantizer(module, value, learn)

    def rebuilds_for_loading(self) -> bool:
        return True  # the step sizes and zero points are in the saved state

    elastic = True

    def elastic_input(self, x: Any, value: int) -> Any:
        from cosearch.compressors.activations import fake_quantize_on_own_range

        return fake_quantize_on_own_range(x, value)
