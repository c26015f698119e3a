"""Store quantized weights as integers in the ONNX file: weight-only QDQ.

Each layer quantized to 2-8 bits gets its weights as an int8 initializer and a per-output-channel
`DequantizeLinear` (axis 0, zero point 0) in front of its Conv / Gemm. ONNX Runtime folds the
dequantization into float weights when it loads the file, so it runs the same kernels as the
float export while the file holds 1 byte per weight instead of 4. (4-bit values are stored in
int8 too: ONNX's int4 needs opset 21, which the exporter used here does not write.)
"""

from __future__ import annotations

import numpy as np

from cosearch.core.candidate import FLOAT_BITS, Policy
from cosearch.core.errors import CosearchError


def quantize_weight_initializers(model_bytes: bytes, torch_model, policy: Policy) -> bytes:
    """Rewrite the float ONNX of `torch_model` (baked under `policy`) with int8 weights + DequantizeLinear."""
    import onnx
    from onnx import helper, numpy_helper

    from cosearch.compressors import layers_of_slot

    proto = onnx.load_from_string(model_bytes)
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
                raise CosearchError(f"weights of {layer!r} are not on a {layer_policy.weight_bits}-bit grid; was the model baked?")
            graph.initializer.remove(initializers[name])
            graph.initializer.extend(
                [
                    numpy_helper.from_array(quantized.reshape(weight.shape), f"{name}_quantized"),
                    numpy_helper.from_array(scale, f"{name}_scale"),
                    numpy_helper.from_array(np.zeros(weight.shape[0], dtype=np.int8), f"{name}_zero_point"),
                ]
            )
            dequantize_nodes.append(
                helper.make_node(
                    "DequantizeLinear", [f"{name}_quantized", f"{name}_scale", f"{name}_zero_point"], [name], name=f"{name}_dequantize", axis=0
                )
            )
    for node in reversed(dequantize_nodes):  # before every consumer: the graph stays topologically sorted
        graph.node.insert(0, node)
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
