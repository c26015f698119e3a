"""The ONNX file a candidate deploys as: quantized weights stored as integers (QDQ).

Each layer quantized to 2-8 bits gets its weights as an 8-bit initializer and a per-output-channel
`DequantizeLinear` (axis 0) in front of its Conv / Gemm. Weight-only layers are folded into float
weights on load when the session sets `session.disable_quant_qdq=1`, so they run the float kernels
while the file holds 1 byte per weight instead of 4. Weight-only layers at 2-4 bits store int4, two
weights a byte: ONNX's int4 needs opset 21, so such files are converted up from the exporter's
opset 17 (ONNX Runtime 1.31 folds and runs int4 DequantizeLinear; a test checks the outputs).

A layer whose input is quantized as well (QuantizeLinear + DequantizeLinear from the exporter)
keeps its QDQ groups. Measured: ONNX Runtime's CPU provider runs them as dequantize + float
kernels, not QLinearConv, since the conv output is not quantized and BatchNorm is not folded.
Those layers store weights as uint8 with zero point 128 (the same values): uint8 x int8 integer
kernels add pairs of products in 16 bits on x86 CPUs without VNNI, which full-range int8 weights
overflow (a digits CNN fell from 99.5 % to 71.5 % with ORT's own quantize_static defaults), and a
runtime that does fuse the groups must not hit that.
"""

from __future__ import annotations

import numpy as np

from cosearch.core.candidate import FLOAT_BITS, Policy
from cosearch.core.errors import CosearchError

INT4_OPSET = 21


def quantize_weight_initializers(model_bytes: bytes, torch_model, policy: Policy) -> bytes:
    """Rewrite the float ONNX of `torch_model` (baked under `policy`) with 8-bit weights + DequantizeLinear."""
    import ml_dtypes  # numpy's int4, a dependency of onnx
    import onnx
    from onnx import helper, numpy_helper, version_converter

    from cosearch.compressors import layers_of_slot

    proto = onnx.load_from_string(model_bytes)
    if any(_int4(lp) for lp in policy.layers.values()):
        proto = version_converter.convert_version(proto, INT4_OPSET)
        proto.ir_version = max(proto.ir_version, 10)  # int4 tensors came with IR version 10
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    dequantize_nodes = []
    for slot, layer_policy in policy.layers.items():
        if layer_policy.weight_bits == FLOAT_BITS:
            continue
        qmax = 2 ** (layer_policy.weight_bits - 1) - 1
        for layer in layers_of_slot(torch_model, slot):
            name = f"{layer}.weight"
            if name not in initializers:
                raise CosearchError(f"ONNX export has no initializer {name!r} for slot {slot!r}")
            weight = numpy_helper.to_array(initializers[name]).astype(np.float32)
            flat = weight.reshape(weight.shape[0], -1)
            scale = np.maximum(np.abs(flat).max(axis=1) / np.float32(qmax), np.float32(1e-8)).astype(np.float32)
            quantized = np.clip(np.round(flat / scale[:, None]), -qmax, qmax).astype(np.int8)
            if not np.allclose(quantized * scale[:, None], flat, rtol=1e-5, atol=1e-7):
                raise CosearchError(
                    f"weights of {layer!r} are not on a {layer_policy.weight_bits}-bit grid; was the model baked?"
                )
            zero_point = np.zeros(weight.shape[0], dtype=np.int8)
            if _int4(layer_policy):
                quantized, zero_point = quantized.astype(ml_dtypes.int4), zero_point.astype(ml_dtypes.int4)
            elif layer_policy.activation_bits != FLOAT_BITS:  # see the module docstring: saturation
                quantized = (quantized.astype(np.int16) + 128).astype(np.uint8)
                zero_point = np.full(weight.shape[0], 128, dtype=np.uint8)
            graph.initializer.remove(initializers[name])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(quantized.reshape(weight.shape), f"{name}_quantized"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(zero_point, f"{name}_zero_point"),
                ]
            )
            dequantize_nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"],
                    [name],
                    name=f"{name}_dequantize",
                    axis=0,
                )
            )
    for node in reversed(dequantize_nodes):  # before every consumer: the graph stays topologically sorted
        graph.node.insert(0, node)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _int4(layer_policy) -> bool:
    """Whether a layer's weights are stored as int4: at 2-4 bits, and only where the weights are
    folded to float on load (weight-only). A layer whose input is quantized keeps an 8-bit
    container so ONNX Runtime can run it as QLinearConv: it has no int4 conv kernel here and
    dequantized int4 weights on every call (a digits network: 8.7 ms against 2.9 ms in float)."""
    return layer_policy.weight_bits <= 4 and layer_policy.activation_bits == FLOAT_BITS


def fold_batch_norms(model_bytes: bytes) -> bytes:
    """Fold every BatchNormalization that alone consumes a Conv's output into that Conv (onnxscript's rule).

    W' = W * k and b' = (b - mean) * k + beta per output channel, k = gamma / sqrt(var + eps).
    With per-channel symmetric weights this keeps each channel on a grid (scale times |k|), so
    folding after quantization gives the grid folding before it would. ONNX Runtime folds float
    Conv+BN itself on load, but not once weights come through DequantizeLinear. Constants are
    folded first: the exporter shares equal buffers (all-zero running means) through Identity nodes.
    """
    import onnx
    import onnxscript
    from onnxscript import ir
    from onnxscript.rewriter import rewrite
    from onnxscript.rewriter.rules.common import fuse_batchnorm_into_conv_rule

    model = ir.serde.deserialize_model(onnx.load_from_string(model_bytes))
    onnxscript.optimizer.fold_constants(model)
    proto = ir.serde.serialize_model(rewrite(model, [fuse_batchnorm_into_conv_rule]))
    initializers = {init.name for init in proto.graph.initializer}
    for info in [v for v in proto.graph.value_info if v.name in initializers]:  # shapes the file already holds
        proto.graph.value_info.remove(info)
    return proto.SerializeToString()


def quantize_outputs(model_bytes: bytes, images: np.ndarray, method: str = "minmax") -> bytes:
    """Quantize the output of every Conv / Gemm whose input is quantized (uint8, per tensor).

    ONNX Runtime runs a layer in integers (QLinearConv) only when its input, weights and output
    all come through QDQ; an input-only group runs as dequantize + float kernel. Ranges are
    calibrated by `method` on `images` run through the file itself. A Relu right after the layer
    is kept inside (quantized after it), as ONNX Runtime's own quantizer does. Measured here on
    a 32-channel NB201 digits network: 0.25 ms against 0.57 ms without and 0.38 ms in float.
    The PyTorch model does not fake-quantize these outputs; the deployed file's accuracy is the
    one the search reports.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from cosearch.compressors.activations import choose_range, scale_and_zero_point
    from cosearch.hardware.onnx_runtime import INPUT_NAME

    proto = onnx.load_from_string(model_bytes)
    graph = proto.graph
    _scalar_qdq_parameters(graph)
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    targets = []  # value to quantize: the layer's output, or that of the Relu right after it
    for node in graph.node:
        source = producer.get(node.input[0]) if node.input else None
        if (
            node.op_type in ("Conv", "Gemm")
            and source is not None
            and source.op_type == "DequantizeLinear"
            and node.output[0] not in outputs
        ):
            after = consumers.get(node.output[0], [])
            value = after[0].output[0] if len(after) == 1 and after[0].op_type == "Relu" else node.output[0]
            if value not in outputs:
                targets.append(value)
    if not targets:
        return model_bytes
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in targets)
    # Unoptimised, as ONNX Runtime's own calibrator runs: its fusions (Conv + Add, say) may remove a value
    # the probe asks for as an output (a BatchNorm folded into a conv that feeds a residual Add).
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    samples = [
        session.run(None, {INPUT_NAME: images[i : i + 64].astype(np.float32)}) for i in range(0, len(images), 64)
    ]
    for k, value in enumerate(targets):
        values = np.concatenate([batch[k].ravel() for batch in samples])
        scale, zero_point = scale_and_zero_point(*choose_range(values, 8, method), 255)
        raw = f"{value}__float"
        for node in graph.node:  # the value's producer writes `raw`; Q + DQ give `value` back
            node.output[:] = [raw if out == value else out for out in node.output]
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, np.float32), f"{raw}_scale"),
                numpy_helper.from_array(np.array(zero_point, np.uint8), f"{raw}_zero_point"),
            ]
        )
        index = next(i for i, node in enumerate(graph.node) if raw in node.output)
        graph.node.insert(
            index + 1,
            helper.make_node(
                "DequantizeLinear", [f"{raw}_q", f"{raw}_scale", f"{raw}_zero_point"], [value], name=f"{raw}_dequantize"
            ),
        )
        graph.node.insert(
            index + 1,
            helper.make_node(
                "QuantizeLinear", [raw, f"{raw}_scale", f"{raw}_zero_point"], [f"{raw}_q"], name=f"{raw}_quantize"
            ),
        )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def _scalar_qdq_parameters(graph) -> None:
    """Per-tensor scales and zero points as scalars: ONNX Runtime's fused integer ops
    (QLinearAdd and others) refuse the 1-element vectors the exporter sometimes writes."""
    from onnx import numpy_helper

    initializers = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(a.name == "axis" for a in node.attribute):
            for name in node.input[1:]:
                init = initializers.get(name)
                if init is not None and list(init.dims) == [1]:
                    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).reshape(()), name))
                    for info in [v for v in graph.value_info if v.name == name]:  # stale shape: ORT warns
                        graph.value_info.remove(info)


def deployment(
    plain_model,
    policy: Policy,
    input_shape,
    int8_weights: bool = True,
    images: np.ndarray | None = None,
    calibration: str = "minmax",
    quantized_outputs: bool = True,
) -> tuple[bytes, dict[str, str]]:
    """The ONNX file of a baked model and the ONNX Runtime session config it is meant to run with.

    Weight-only quantization runs fastest with dequantization folded on load; once any layer's
    input is quantized, those layers' outputs are quantized too (calibrated on `images`, or on
    seeded noise when only the graph matters, as for latency) so that ONNX Runtime runs them in
    integers, and the config stays default so the QDQ groups are kept as written.
    `quantized_outputs=False` leaves outputs float (the file then computes exactly what the
    fake-quantized PyTorch model does, in dequantize + float kernels, except that ONNX Runtime's
    `WeightBiasQuantization` optimizer, on by default, rounds the float weights of a layer whose input
    is quantized to int8 per tensor; the search measures accuracy on the file as ONNX Runtime runs it).
    """
    from cosearch.hardware.onnx_runtime import FOLD_WEIGHT_DEQUANTIZE, to_onnx_bytes

    onnx_bytes = fold_batch_norms(to_onnx_bytes(plain_model, input_shape))
    if not int8_weights or all(lp.weight_bits == FLOAT_BITS for lp in policy.layers.values()):
        return onnx_bytes, {}
    onnx_bytes = quantize_weight_initializers(onnx_bytes, plain_model, policy)
    if not any(lp.activation_bits != FLOAT_BITS for lp in policy.layers.values()):
        return onnx_bytes, dict(FOLD_WEIGHT_DEQUANTIZE)
    if not quantized_outputs:
        return onnx_bytes, {}
    if images is None:
        images = np.random.default_rng(0).standard_normal((64, *input_shape)).astype(np.float32)
    return quantize_outputs(onnx_bytes, images, calibration), {}
