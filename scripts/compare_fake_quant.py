"""Our weight fake quantizer beside torchao's QAT fake quantizer: same grid? how fast?

    pip install torchao && python scripts/compare_fake_quant.py

cosearch fake-quantizes weights per output channel, symmetric, with torch's own
`fake_quantize_per_channel_affine` (narrow range -qmax..qmax, qmax = 2^(b-1) - 1). torchao's
`IntxFakeQuantizer` (per_channel, symmetric) is the well-kept library alternative. For each bit
width and a conv and a linear weight: the share of weights the two put on different values, their
mean squared error against the float weights, and forward+backward time per call (1 thread).
"""

from __future__ import annotations

import time

import torch


def timed(fn, weight: torch.Tensor, repeats: int = 200) -> float:
    for _ in range(10):
        fn(weight).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(weight).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    from torchao.quantization.qat import IntxFakeQuantizeConfig, IntxFakeQuantizer

    from cosearch.compressors.quantize import PerChannelSymmetricFakeQuant

    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| weight | bits | values differing | MSE ours | MSE torchao | ms ours | ms torchao |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for shape in ((256, 256, 3, 3), (10, 1024)):
        for bits in (2, 4, 8):
            weight = (torch.randn(shape) * 0.05).requires_grad_()
            ours = PerChannelSymmetricFakeQuant(bits)
            theirs = IntxFakeQuantizer(
                IntxFakeQuantizeConfig(getattr(torch, f"int{bits}"), granularity="per_channel", is_symmetric=True)
            )
            flat = lambda w, q=theirs: q(w.flatten(1)).view_as(w)  # noqa: E731  (torchao takes 2-D weights)
            a, b = ours(weight), flat(weight)
            differ = (a != b).float().mean().item()
            mse = [((q - weight) ** 2).mean().item() for q in (a, b)]
            print(
                f"| {'x'.join(map(str, shape))} | {bits} | {differ:.1%} | {mse[0]:.2e} | {mse[1]:.2e} | {timed(ours, weight):.2f} | {timed(flat, weight):.2f} |"
            )


if __name__ == "__main__":
    main()
