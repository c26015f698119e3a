"""Fake quantization of layer inputs (activations): per-tensor asymmetric, 4 or 8 bits.

A quantized layer gets a child `input_quant` and a forward pre-hook that passes its input through
it, so module names (the policy's slots) stay as they are and the quantizer's scale and zero
point travel in the state dict. The range comes from post-training calibration on a few batches
(min-max, percentile, MSE or KL/entropy, as TensorRT and ONNX Runtime offer); quantization-aware
fine-tuning then trains through it with a straight-through estimator, or learns the step size
(LSQ, Esser et al. 2020).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from cosearch._private import learnable_fake_quantize
from cosearch.compressors.techniques.activation_bits import CALIBRATIONS, QUANTIZED_BITS, Calibration

SAMPLES_PER_BATCH = 4096  # values kept per calibration batch for percentile / MSE / KL
PERCENTILE = 99.99


class ActivationFakeQuant(nn.Module):
    """x -> (clamp(round(x / scale) + zero_point, 0, 2^bits - 1) - zero_point) * scale."""

    def __init__(self, bits: int, learnable: bool = False) -> None:
        super().__init__()
        if bits not in QUANTIZED_BITS:
            raise ValueError(f"`bits in {QUANTIZED_BITS}` must hold, but got {bits=}")
        self.bits, self.learnable = bits, learnable
        self.qmax = 2**bits - 1
        if learnable:
            self.scale = nn.Parameter(torch.tensor([1.0]))
        else:
            self.register_buffer("scale", torch.tensor([1.0]))
        self.register_buffer("zero_point", torch.tensor([0], dtype=torch.int32))
        self.observing = False
        self._samples: list[np.ndarray] = []
        self._low, self._high = np.inf, -np.inf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            self._observe(x)
            return x
        if self.learnable:
            grad_factor = 1.0 / float(np.sqrt(x[0].numel() * self.qmax))  # LSQ's gradient scale
            scale = self.scale.abs() + 1e-8
            return learnable_fake_quantize(x, scale, self.zero_point.float(), 0, self.qmax, grad_factor)
        scale = self.scale.float()
        if self.qmax < 255:
            # Below 8 bits: clip to the narrow grid, then an 8-bit fake quantize with the same scale
            # and zero point -- the same numbers, and ONNX export writes Clip + QuantizeLinear +
            # DequantizeLinear (it has no 4-bit QuantizeLinear at the opset used here).
            zero = self.zero_point.float()
            x = torch.clamp(x, (0 - zero) * scale, (self.qmax - zero) * scale)
        return torch.fake_quantize_per_tensor_affine(x, scale, self.zero_point, 0, 255)

    def freeze(self) -> None:
        """Turn a learnt step size into a fixed one (for export)."""
        scale = self.scale.detach().abs() + 1e-8
        del self.scale
        self.register_buffer("scale", scale)
        self.learnable = False

    def _observe(self, x: torch.Tensor) -> None:
        values = x.detach().flatten().float().numpy()
        self._low, self._high = min(self._low, float(values.min())), max(self._high, float(values.max()))
        if len(values) > SAMPLES_PER_BATCH:
            values = np.random.default_rng(len(self._samples)).choice(values, SAMPLES_PER_BATCH, replace=False)
        self._samples.append(values)

    def forget(self) -> None:
        """Drop what was observed since the last calibration."""
        self._samples, self._low, self._high = [], np.inf, -np.inf

    def finish_calibration(self, method: Calibration) -> None:
        """Set scale and zero point from what was observed."""
        if not self._samples:
            raise ValueError("no calibration data went through this layer")
        samples = np.concatenate(self._samples)
        low, high = choose_range(samples, self.bits, method, (self._low, self._high))
        scale, zero_point = scale_and_zero_point(low, high, self.qmax)
        with torch.no_grad():
            self.scale.copy_(torch.tensor([scale]))
            self.zero_point.copy_(torch.tensor([zero_point], dtype=torch.int32))
        self.forget()

    def extra_repr(self) -> str:
        return f"bits={self.bits}, learnable={self.learnable}"


def scale_and_zero_point(low: float, high: float, qmax: int) -> tuple[float, int]:
    low, high = min(low, 0.0), max(high, 0.0)  # 0 must be exact (padding, ReLU zeros)
    scale = max((high - low) / qmax, 1e-8)
    return scale, int(np.clip(round(-low / scale), 0, qmax))


def _fake_quant(values: np.ndarray, low: float, high: float, qmax: int) -> np.ndarray:
    scale, zero_point = scale_and_zero_point(low, high, qmax)
    return (np.clip(np.round(values / scale) + zero_point, 0, qmax) - zero_point) * scale


def choose_range(
    samples: np.ndarray, bits: int, method: Calibration, extremes: tuple[float, float] | None = None
) -> tuple[float, float]:
    """The clipping range [low, high] of a tensor from calibration samples."""
    low, high = extremes if extremes is not None else (float(samples.min()), float(samples.max()))
    qmax = 2**bits - 1
    if method == "minmax" or high <= low:
        return low, high
    if method == "percentile":
        lo, hi = np.percentile(samples, [100 - PERCENTILE, PERCENTILE])
        return float(lo), float(hi)
    if method == "mse":
        best, best_error = (low, high), np.inf
        for shrink in np.linspace(0.05, 1.0, 96):  # both ends pulled in alike
            candidate = (low * shrink, high * shrink)
            error = float(np.mean((_fake_quant(samples, *candidate, qmax) - samples) ** 2))
            if error < best_error:
                best, best_error = candidate, error
        return best
    if method == "kl":
        threshold = _entropy_threshold(np.abs(samples), qmax + 1)
        return max(low, -threshold), min(high, threshold)
    raise ValueError(f"`method in {CALIBRATIONS}` must hold, but got {method=}")


def _entropy_threshold(magnitudes: np.ndarray, levels: int, bins: int = 2048) -> float:
    """TensorRT's entropy calibration: the clipping threshold whose quantized histogram loses
    the least information (KL divergence) against the clipped reference histogram."""
    top = float(magnitudes.max())
    if top <= 0:
        return 1e-8
    hist, edges = np.histogram(magnitudes, bins=bins, range=(0.0, top))
    hist = hist.astype(np.float64)
    best_i, best_kl = bins, np.inf
    for i in range(levels, bins + 1, max(1, (bins - levels) // 256)):
        reference = hist[:i].copy()
        reference[-1] += hist[i:].sum()  # outliers fold into the last kept bin
        nonzero = reference > 0
        # quantize the first i bins into `levels` groups, spreading each group's mass over its non-empty bins
        groups = np.array_split(np.arange(i), levels)
        expanded = np.zeros(i)
        for group in groups:
            mask = hist[group] > 0
            if mask.any():
                expanded[group[mask]] = hist[group].sum() / mask.sum()
        p = reference / reference.sum()
        q = expanded / max(expanded.sum(), 1e-12)
        q = np.where(q > 0, q, 1e-4 / i)  # smoothed, as ONNX Runtime does: an empty bin is unlikely, not impossible
        q /= q.sum()
        kl = float(np.sum(p[nonzero] * np.log(p[nonzero] / q[nonzero])))
        if kl < best_kl:
            best_i, best_kl = i, kl
    return float(edges[best_i])


def fake_quantize_on_own_range(x: torch.Tensor, bits: int) -> torch.Tensor:
    """`x` fake-quantized per tensor on its own range (unsigned when it is non-negative, as after a
    ReLU), gradients passing straight through inside it: a layer input at `bits` where no range is
    calibrated yet (a supernet or a relaxed search training through every width)."""
    signed = float(x.detach().min()) < 0
    qmax = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    scale = max(float(x.detach().abs().max()) / qmax, 1e-8)
    return torch.fake_quantize_per_tensor_affine(x, scale, 0, -qmax if signed else 0, qmax)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def add_input_quantizer(module: nn.Module, bits: int, learnable: bool = False) -> None:
    """Quantize `module`'s input from now on (a child `input_quant` and a pre-hook)."""
    if hasattr(module, "input_quant"):
        raise ValueError(f"{type(module).__name__} already quantizes its input")
    module.add_module("input_quant", ActivationFakeQuant(bits, learnable))
    module.register_forward_pre_hook(_quantize_input)


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuant]:
    return {name: m for name, m in model.named_modules() if isinstance(m, ActivationFakeQuant)}


@contextmanager
def unquantized_inputs(model: nn.Module) -> Iterator[nn.Module]:
    """`model` with its input quantizers passing values through unchanged, forgetting what they
    saw (to re-estimate BatchNorm statistics of compressed weights before calibration, say)."""
    quantizers = list(activation_quantizers(model).values())
    for quantizer in quantizers:
        quantizer.observing = True
    try:
        yield model
    finally:
        for quantizer in quantizers:
            quantizer.observing = False
            quantizer.forget()


def calibrate(model: nn.Module, batches: Iterable[torch.Tensor], method: Calibration = "minmax") -> nn.Module:
    """Set every input quantizer's range from `batches` run through `model` (in eval mode, in place)."""
    if method not in CALIBRATIONS:
        raise ValueError(f"`method in {CALIBRATIONS}` must hold, but got {method=}")
    quantizers = activation_quantizers(model)
    if not quantizers:
        return model
    was_training = model.training
    model.eval()
    for quantizer in quantizers.values():
        quantizer.observing = True
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for quantizer in quantizers.values():
            quantizer.observing = False
    for _name, quantizer in quantizers.items():
        try:
            quantizer.finish_calibration(method)
        except ValueError:  # a layer the calibration data never reached keeps scale 1
            pass
    model.train(was_training)
    return model
