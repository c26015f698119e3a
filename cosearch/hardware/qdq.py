"""The ONNX file a candidate deploys as, fast when loaded with ONNX Runtime's default options.

`deployment` writes what the search measures and `cosearch export` ships as model.onnx:

- Float and weight-only layers keep float32 weights (on their quantization grid): ONNX Runtime
  keeps a weight-only DequantizeLinear and runs it on every call unless the session sets
  `session.disable_quant_qdq=1` (measured: 0.145 against 0.030 ms for a digits pick), and most
  users load a file with `InferenceSession(path)` and nothing else.
- Layers whose input is quantized run as integer kernels (float weights at 8 bits per channel:
  ONNX Runtime would round them to int8 per tensor on load anyway): the graph is ONNX
  Runtime's own static quantizer's (QDQ: every Add, pooling and the classifier quantized too,
  Relus folded into the layer before), given our numbers as overrides: each layer's input scale
  as the search calibrated or learnt it, its weight grid per output channel, and every other
  tensor's range calibrated on the search's images by the search's method. Weights are stored as
  int8, the u8 x s8 kernels ONNX Runtime runs fastest, except 8-bit weights on a CPU whose kernel
  saturates on them (`int8_weights_exact`): x86 without VNNI adds pairs of u8 x s8 products in 16
  bits, which 7-bit weights cannot overflow but full-range int8 can (a digits CNN fell from 99.5 % to
  71.5 % with ONNX Runtime's own unreduced defaults on such a CPU). There, and in a `portable` file,
  8-bit weights are uint8 with zero point 128: exact everywhere through u8 x u8 kernels, but slower
  (2-10 % on an AVX2 machine; 2.7x on an AVX512-VNNI one, whose u8 x u8 path has no VNNI kernel).
  A 4-bit input keeps its clamp, so it takes 16 levels in the 8-bit container the kernels read.

`compact` writes the small-storage form of the same model (model.compact.onnx): weight-only layers
as int8, or int4 two a byte at 2-4 bits, each with a per-channel DequantizeLinear; with
`FOLD_WEIGHT_DEQUANTIZE` ONNX Runtime folds them to float on load and runs at model.onnx's speed.
ONNX's int4 needs opset 21, so such files are converted up from the exporter's opset 17.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from cosearch.compressors.base import layer_precision, runs_integer
from cosearch.core.candidate import FLOAT_BITS, Policy
from cosearch.core.errors import CosearchError

INT4_OPSET = 21
LAYER_OPS = ("Conv", "Gemm")
SAME_AS_INPUT = (  # onnxruntime.quantization.registry: QDQDirect8BitOp and kin
    "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "AveragePool", "MaxPool", "Slice", "Split",
    "Gather", "GatherElements", "Pad", "Resize", "TopK",
)  # fmt: skip


def channel_scales(weight: np.ndarray, bits: int) -> np.ndarray:
    """Per-output-channel scale of a symmetric `bits`-bit grid that holds `weight`'s largest magnitude."""
    qmax = 2 ** (bits - 1) - 1
    flat = weight.reshape(weight.shape[0], -1).astype(np.float32)
    return np.maximum(np.abs(flat).max(axis=1) / np.float32(qmax), np.float32(1e-8)).astype(np.float32)


def weight_grid(weight: np.ndarray, bits: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel scale and integer values of weights baked on a symmetric `bits`-bit grid."""
    qmax = 2 ** (bits - 1) - 1
    flat = weight.reshape(weight.shape[0], -1).astype(np.float32)
    scale = channel_scales(weight, bits)
    quantized = np.clip(np.round(flat / scale[:, None]), -qmax, qmax).astype(np.int8)
    if not np.allclose(quantized * scale[:, None], flat, rtol=1e-5, atol=1e-7):
        raise CosearchError(f"weights of {name!r} are not on a {bits}-bit grid; was the model baked?")
    return scale, quantized.reshape(weight.shape)


def compact(model_bytes: bytes, torch_model, policy: Policy) -> bytes | None:
    """`model_bytes` (a deployment) with weight-only layers stored as int8 / int4 + DequantizeLinear,
    or None when no layer is weight-only quantized (the file is as small as it gets)."""
    import ml_dtypes  # numpy's int4, a dependency of onnx
    import onnx
    from onnx import helper, numpy_helper, version_converter

    from cosearch.compressors import layers_of_slot

    weight_only = {  # slot -> its weights' bits
        slot: precision.weights
        for slot, precision in ((slot, layer_precision(lp)) for slot, lp in policy.layers.items())
        if precision.weight_only
    }
    if not weight_only:
        return None
    proto = onnx.load_from_string(model_bytes)
    if any(bits <= 4 for bits in weight_only.values()):
        proto = version_converter.convert_version(proto, INT4_OPSET)
        proto.ir_version = max(proto.ir_version, 10)  # int4 tensors came with IR version 10
    graph = proto.graph
    initializers = {init.name: init for init in graph.initializer}
    dequantize_nodes = []
    for slot, bits in weight_only.items():
        for layer in layers_of_slot(torch_model, slot):
            name = f"{layer}.weight"
            if name not in initializers:
                raise CosearchError(f"ONNX export has no initializer {name!r} for slot {slot!r}")
            scale, quantized = weight_grid(numpy_helper.to_array(initializers[name]), bits, name)
            zero_point = np.zeros(len(scale), dtype=np.int8)
            if bits <= 4:
                quantized, zero_point = quantized.astype(ml_dtypes.int4), zero_point.astype(ml_dtypes.int4)
            graph.initializer.remove(initializers[name])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(quantized, f"{name}_quantized"),
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


@functools.cache
def int8_weights_exact() -> bool:
    """Whether this machine's ONNX Runtime sums full-range int8 weights against uint8 inputs exactly.

    Probed, not read from CPU flags (what counts is the kernel ONNX Runtime dispatches): a QDQ 1x1
    conv whose every input is 255 and every weight 127 sums 64 products; x86 kernels without VNNI
    (vpmaddubsw) clamp each pair at 32767 instead of 64770 and return about half.
    """
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    channels = 64
    constants = {
        "x_scale": np.float32(1 / 255), "x_zero": np.uint8(0),
        "w": np.full((1, channels, 1, 1), 127, np.int8), "w_scale": np.float32(1 / 127), "w_zero": np.int8(0),
        "y_scale": np.float32(channels / 255 * 1.01), "y_zero": np.uint8(0),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("DequantizeLinear", ["w", "w_scale", "w_zero"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"]),
        helper.make_node("QuantizeLinear", ["c", "y_scale", "y_zero"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "y_scale", "y_zero"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "int8_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": np.ones((1, channels, 4, 4), np.float32)})[0]
    return bool(np.allclose(got, channels, rtol=0.02))


def int8_weights_note() -> str:
    """How this machine deploys 8-bit weights of integer layers, for benchmark headers."""
    if int8_weights_exact():
        return "8-bit weights deploy as int8 (this CPU's ONNX Runtime u8 x s8 kernel sums them exactly)"
    return "8-bit weights deploy as uint8, zero point 128 (this CPU's u8 x s8 kernel saturates on full-range int8)"


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


def quantize_static_qdq(
    model_bytes: bytes,
    torch_model,
    policy: Policy,
    images: np.ndarray,
    method: str = "minmax",
    calibrated_inputs: bool = True,
    portable: bool = False,
) -> bytes:
    """ONNX Runtime's `quantize_static` (QDQ) of the baked float file, on our numbers (module docstring).

    Only the integer region is quantized: the layers whose input is quantized, and every other
    node whose inputs all come from that region; float and weight-only layers keep float weights.
    Without `calibrated_inputs` (a model not yet calibrated: its scales are all 1) the layers'
    inputs are calibrated on `images` like the rest. `portable`: 8-bit weights as uint8 even where
    this machine runs int8 exactly, so the file is exact on every CPU.
    """
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantType

    from cosearch.compressors import layers_of_slot
    from cosearch.hardware.onnx_runtime import INPUT_NAME

    proto = onnx.load_from_string(model_bytes)
    graph = proto.graph
    for i, node in enumerate(graph.node):  # ORT selects nodes by name
        node.name = node.name or f"node_{i}"
    # Integer layers (their input is quantized); float weights there run at 8 bits per channel, off
    # the grid (ONNX Runtime would round them to int8 per tensor on load anyway).
    bits = {
        f"{layer}.weight": precision.weights
        for slot, precision in ((slot, layer_precision(lp)) for slot, lp in policy.layers.items())
        if precision.integer
        for layer in layers_of_slot(torch_model, slot)
    }
    layers = {n.name for n in graph.node if n.op_type in LAYER_OPS and len(n.input) > 1 and n.input[1] in bits}
    inputs = _through_data_movement(graph, _strip_input_quantizers(graph, layers))
    # ONNX Runtime quantizes the output of a data-movement op (Flatten, pooling, ...) as its input; a
    # range of its own would add a requantization, and one that depends on the calibration images
    same_as_input = {out for n in graph.node if n.op_type in SAME_AS_INPUT for out in n.output}
    overrides: dict[str, list[dict]] = {
        name: [{"rmin": np.array(low, np.float32), "rmax": np.array(high, np.float32)}]
        for name, (low, high) in _tensor_ranges(proto, images, method).items()
        if name not in same_as_input
    }
    for name, (scale, zero_point) in inputs.items() if calibrated_inputs else ():
        overrides[name] = [{"scale": np.array(scale, np.float32), "zero_point": np.array(zero_point, np.uint8)}]
    # A 4-bit input keeps the exporter's clamp (Clip, or Max + Min) in float before its quantizer
    clips = {n.name for n in graph.node if n.op_type in ("Clip", "Min", "Max") and n.output[0] in inputs}
    region = _integer_region(graph, layers, clips | _pools_beyond_kernel_range(graph, overrides))
    initializers = {init.name: init for init in graph.initializer}
    for name, width in bits.items():
        if name not in initializers:
            raise CosearchError(f"ONNX export has no initializer {name!r}")
        weight = numpy_helper.to_array(initializers[name])
        scale = channel_scales(weight, 8) if width == FLOAT_BITS else weight_grid(weight, width, name)[0]
        signed = width <= 7 or (not portable and int8_weights_exact())
        quant_type, zero_point = (QuantType.QInt8, np.int8(0)) if signed else (QuantType.QUInt8, np.uint8(128))
        overrides[name] = [
            {"axis": 0, "quant_type": quant_type, "scale": np.array(s, np.float32), "zero_point": np.array(zero_point)}
            for s in scale
        ]

    class Calibration(CalibrationDataReader):  # every range is overridden; ORT's calibrator needs a batch anyway
        def __init__(self) -> None:
            self.batches = iter([{INPUT_NAME: images[:8].astype(np.float32)}])

        def get_next(self):
            return next(self.batches, None)

    return _quantize_static(proto, Calibration(), region, overrides)


def _quantize_static(proto, calibration, region: set[str], overrides: dict) -> bytes:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # it logs advice (pre-processing, a BatchNorm's axis) as warnings on the root logger
    try:
        with tempfile.TemporaryDirectory() as tmp:  # it reads and writes files
            source, target = os.path.join(tmp, "float.onnx"), os.path.join(tmp, "qdq.onnx")
            Path(source).write_bytes(proto.SerializeToString())
            quantize_static(
                source,
                target,
                calibration,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_quantize=sorted(region),
                # our weight grids as they are: ORT would widen a scale whose int32 bias scale is tiny
                extra_options={"TensorQuantOverrides": overrides, "QDQDisableWeightAdjustForInt32Bias": True},
            )
            return Path(target).read_bytes()
    finally:
        root.setLevel(level)


def _strip_input_quantizers(graph, layers: set[str]) -> dict[str, tuple[float, int]]:
    """Remove the exporter's QuantizeLinear + DequantizeLinear in front of `layers` (node names);
    return each quantized tensor's scale and zero point, for ONNX Runtime's quantizer to reuse."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node if n.op_type == "Constant"})
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found, removed = {}, []
    for quantize in [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in values]:
        dequantizes = consumers.get(quantize.output[0], [])
        if not dequantizes or any(d.op_type != "DequantizeLinear" for d in dequantizes):
            continue
        users = [u for d in dequantizes for u in consumers.get(d.output[0], [])]
        if not users or any(u.name not in layers for u in users):
            continue
        source = quantize.input[0]
        found[source] = (float(values[quantize.input[1]].ravel()[0]), int(values[quantize.input[2]].ravel()[0]))
        for d in dequantizes:
            for user in consumers[d.output[0]]:
                user.input[:] = [source if name == d.output[0] else name for name in user.input]
        removed += [quantize, *dequantizes]
    for node in removed:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)
    return found


def _through_data_movement(graph, inputs: dict[str, tuple[float, int]]) -> dict[str, tuple[float, int]]:
    """A layer input that a data-movement op (the Flatten before a classifier) produces is quantized
    at that op's input instead, which ONNX Runtime then carries through: no requantization between."""
    producer = {out: node for node in graph.node for out in node.output}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    moved = {}
    for name, params in inputs.items():
        while (node := producer.get(name)) is not None and node.op_type in SAME_AS_INPUT and uses[node.input[0]] == 1:
            name = node.input[0]
        moved[name] = params
    return moved


def _override_scale(entries: list[dict] | None) -> float | None:
    """The per-tensor scale an override gives (ONNX Runtime's uint8 scale for a range)."""
    if not entries or len(entries) != 1:
        return None
    entry = entries[0]
    if "scale" in entry:
        return float(entry["scale"])
    return (max(float(entry["rmax"]), 0.0) - min(float(entry["rmin"]), 0.0)) / 255.0


def _pools_beyond_kernel_range(graph, overrides: dict[str, list[dict]]) -> set[str]:
    """GlobalAveragePool nodes ONNX Runtime's integer kernel would refuse at run time: it needs input
    scale / (output scale x pixels) below 256 (a layer input's narrow range after a wide feature map).
    They stay float, between a DequantizeLinear and a QuantizeLinear; pixels >= 1, so this is safe."""
    out = set()
    for node in graph.node:
        if node.op_type == "GlobalAveragePool":
            scale_in, scale_out = (
                _override_scale(overrides.get(node.input[0])),
                _override_scale(overrides.get(node.output[0])),
            )
            if scale_in and scale_out and scale_in / scale_out >= 256:
                out.add(node.name)
    return out


def _integer_region(graph, layers: set[str], keep_float: set[str]) -> set[str]:
    """`layers` and every other node (in topological order) whose data inputs all come from the region;
    constants (initializers, and what is computed from them alone: shapes, slice bounds) are not data."""
    constant = {init.name for init in graph.initializer}
    region, produced = set(), set()
    for node in graph.node:
        data = [name for name in node.input if name and name not in constant]
        if not data and node.name not in layers:
            constant.update(node.output)
            continue
        inside = node.name in layers or (
            node.op_type not in (*LAYER_OPS, "QuantizeLinear", "DequantizeLinear")
            and node.name not in keep_float
            and all(name in produced for name in data)
        )
        if inside:
            region.add(node.name)
            produced.update(node.output)
    return region


def _tensor_ranges(proto, images: np.ndarray, method: str) -> dict[str, tuple[float, float]]:
    """[low, high] of every float tensor the graph computes, from `images` run through it, by `method`."""
    import onnx
    import onnxruntime as ort

    from cosearch.compressors.activations import SAMPLES_PER_BATCH, choose_range
    from cosearch.hardware.onnx_runtime import INPUT_NAME

    names = list(dict.fromkeys(out for n in proto.graph.node if n.op_type != "Constant" for out in n.output if out))
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    # Unoptimised, as ONNX Runtime's own calibrator runs: its fusions remove values the probe asks for.
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    samples: dict[str, list[np.ndarray]] = {}
    extremes: dict[str, tuple[float, float]] = {}
    rng = np.random.default_rng(0)
    for i in range(0, len(images), 64):
        outputs = session.run(None, {INPUT_NAME: images[i : i + 64].astype(np.float32)})
        for name, value in zip(names, outputs):
            if not (isinstance(value, np.ndarray) and value.dtype == np.float32 and value.size):
                continue
            flat = value.ravel()
            low, high = extremes.get(name, (np.inf, -np.inf))
            extremes[name] = (min(low, float(flat.min())), max(high, float(flat.max())))
            if method != "minmax":
                kept = flat if len(flat) <= SAMPLES_PER_BATCH else rng.choice(flat, SAMPLES_PER_BATCH, replace=False)
                samples.setdefault(name, []).append(kept)
    if method == "minmax":
        return extremes
    return {name: choose_range(np.concatenate(samples[name]), 8, method, extremes[name]) for name in extremes}


def deployment(
    plain_model,
    policy: Policy,
    input_shape,
    images: np.ndarray | None = None,
    calibration: str = "minmax",
    portable: bool = False,
) -> bytes:
    """The ONNX file of a baked model, as the search measures it and `cosearch export` writes it.

    Integer layers' inputs keep the model's scales and every other range is calibrated on `images`
    by `calibration`. Without `images` only the graph matters (latency before training, on a model
    not calibrated yet): every range, the layers' inputs too, comes from seeded noise. The graph
    ONNX Runtime runs is the same either way (a test checks it on every space). `portable`: see
    `quantize_static_qdq`.
    """
    from cosearch.hardware.onnx_runtime import to_onnx_bytes

    onnx_bytes = fold_batch_norms(to_onnx_bytes(plain_model, input_shape))
    if not runs_integer(policy):
        return onnx_bytes
    calibrated = images is not None
    if images is None:
        images = np.random.default_rng(0).standard_normal((64, *input_shape)).astype(np.float32)
    return quantize_static_qdq(
        onnx_bytes, plain_model, policy, images, calibration, calibrated_inputs=calibrated, portable=portable
    )
