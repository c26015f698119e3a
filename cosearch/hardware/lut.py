"""Per-layer latency lookup tables, profiled on a device and summed to predict a network.

A "layer" is a node of the graph ONNX Runtime really runs: the candidate's ONNX file after
ORT's own optimisations (Conv+BN+ReLU fused, NCHWc layout on x86), so fusion is accounted for
the way nn-Meter's kernel detection does. Each distinct node configuration (op, attributes,
input shapes) is timed on the device inside a graph of identical copies, so the per-call
overhead of a session run cancels out: cost = (t(8 copies) - t(1 copy)) / 7. A network's
latency is predicted as `overhead_ms + sum over op types of scale[op] * (costs of its nodes)`.
Overhead and per-op scales are fitted on whole networks measured while profiling: timed alone,
a node costs more than inside a network (a ReLU after a conv nearly nothing, an Add less), and
the raw sum over-predicted NB201 networks by a median 7 %.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosearch.core.errors import SpecError
from cosearch.hardware.onnx_runtime import INPUT_NAME, LatencySettings, exclusive_measurement, measure_latency

FORMAT = "cosearch-latency-table/1"
COPIES = 8  # copies of a node timed together; the slope from 1 to COPIES is the node's cost


def _ort_options(level: str, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[level]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return options


def optimized_graph(model_bytes: bytes) -> Any:
    """The graph ONNX Runtime runs for `model_bytes` on this machine (all optimisations on)."""
    import onnx
    import onnxruntime as ort

    options = _ort_options("all")
    handle, path = tempfile.mkstemp(suffix=".onnx")
    os.close(handle)
    try:
        options.optimized_model_filepath = path
        ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        return onnx.load(path)
    finally:
        os.remove(path)


def value_shapes(graph_model: Any, input_shape: Sequence[int]) -> dict[str, tuple[tuple[int, ...], Any]]:
    """Shape and numpy dtype of every value of `graph_model` at batch 1, learnt by running it once.

    ONNX shape inference does not know ORT's own ops (NCHWc, QLinearConv), so run it instead;
    outputs are declared without a type, which ORT fills in.
    """
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(graph_model)
    names = [name for node in model.graph.node for name in node.output if name]
    del model.graph.output[:]
    for name in names:
        model.graph.output.append(onnx.ValueInfoProto(name=name))
    sess = ort.InferenceSession(model.SerializeToString(), _ort_options("none"), providers=["CPUExecutionProvider"])
    values = sess.run(None, {INPUT_NAME: np.zeros((1, *input_shape), np.float32)})
    shapes = {name: (tuple(value.shape), value.dtype) for name, value in zip(names, values)}
    shapes[INPUT_NAME] = ((1, *input_shape), np.dtype(np.float32))
    for init in model.graph.initializer:
        shapes[init.name] = (tuple(init.dims), numpy_helper.to_array(init).dtype)
    return shapes


def node_key(node: Any, shapes: dict[str, tuple[tuple[int, ...], Any]], constants: set[str]) -> str:
    """What a node's cost depends on: op, attributes, and the shape and type of each input."""
    from onnx import helper

    attributes = {a.name: _plain(helper.get_attribute_value(a)) for a in node.attribute}
    inputs = []
    for name in node.input:
        if name:
            shape, dtype = shapes.get(name, ((), None))
            inputs.append(
                [name in constants, list(shape)] + ([str(dtype)] if dtype is not None and dtype != np.float32 else [])
            )
    return json.dumps(
        [node.domain or "ai.onnx", node.op_type, attributes, inputs], sort_keys=True, separators=(",", ":")
    )


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (int, float, str)):
        return value
    return str(value)  # tensors and graphs as attributes: not in the models we export


@dataclass
class GraphNodes:
    """The nodes of a network's runtime graph, by key, with what it takes to time each alone."""

    model: Any
    shapes: dict[str, tuple[tuple[int, ...], Any]]  # value -> (shape, numpy dtype)
    keys: list[str]
    nodes: dict[str, Any]  # key -> one node with that key


def graph_nodes(model_bytes: bytes, input_shape: Sequence[int]) -> GraphNodes:
    model = optimized_graph(model_bytes)
    shapes = value_shapes(model, input_shape)
    constants = {init.name for init in model.graph.initializer}
    keys, nodes = [], {}
    for node in model.graph.node:
        key = node_key(node, shapes, constants)
        keys.append(key)
        nodes.setdefault(key, node)
    return GraphNodes(model, shapes, keys, nodes)


def _copies_model(node: Any, graph: GraphNodes, copies: int) -> tuple[bytes, dict[str, np.ndarray]]:
    """A graph of `copies` independent copies of `node`, reading the same inputs."""
    import onnx
    from onnx import helper

    initializers = {init.name: init for init in graph.model.graph.initializer}
    inputs, constants = [], []
    for name in dict.fromkeys(n for n in node.input if n):
        if name in initializers:
            constants.append(initializers[name])
        else:
            shape, dtype = graph.shapes[name]
            inputs.append(helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape))
    nodes, outputs = [], []
    for c in range(copies):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = f"copy{c}"
        del copy.output[:]
        copy.output.extend(f"{name}__{c}" if name else "" for name in node.output)
        nodes.append(copy)
        outputs.append(onnx.ValueInfoProto(name=copy.output[0]))
    model = helper.make_model(
        helper.make_graph(nodes, "copies", inputs, outputs, constants), opset_imports=graph.model.opset_import
    )
    model.ir_version = graph.model.ir_version
    rng = np.random.default_rng(0)
    feed = {}
    for v in inputs:
        shape, dtype = graph.shapes[v.name]
        values = rng.standard_normal(shape) if np.issubdtype(dtype, np.floating) else rng.integers(0, 100, size=shape)
        feed[v.name] = values.astype(dtype)
    return model.SerializeToString(), feed


def _time_ms(model_bytes: bytes, feed: dict[str, np.ndarray], settings: LatencySettings) -> float:
    import onnxruntime as ort

    # The graph is already what ORT runs; optimising it again would add layout reorders per node.
    sess = ort.InferenceSession(model_bytes, _ort_options("none", settings.threads), providers=["CPUExecutionProvider"])
    for _ in range(settings.warmup_runs):
        sess.run(None, feed)
    times = []
    for _ in range(settings.runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


class _NodeTiming:
    """One node configuration's 1-copy and COPIES-copy graphs, and the lowest median of each so far."""

    def __init__(self, node: Any, graph: GraphNodes):
        self.one, self.feed = _copies_model(node, graph, 1)
        self.many, _ = _copies_model(node, graph, COPIES)
        self.single_ms = self.multiple_ms = float("inf")

    def time(self, settings: LatencySettings) -> _NodeTiming:
        with exclusive_measurement():
            self.single_ms = min(self.single_ms, _time_ms(self.one, self.feed, settings))
            self.multiple_ms = min(self.multiple_ms, _time_ms(self.many, self.feed, settings))
        return self

    @property
    def cost_ms(self) -> float:
        return max(0.0, (self.multiple_ms - self.single_ms) / (COPIES - 1))


class MissingLayers(ValueError):
    """The network has node configurations the table was not profiled with."""


@dataclass
class LatencyTable:
    """What `cosearch profile` writes: node costs plus the whole-network calibration."""

    device: str
    input_shape: list[int]
    entries: dict[str, float]  # node key -> ms
    overhead_ms: float = 0.0
    op_scales: dict[str, float] = field(default_factory=dict)  # op type -> factor (1 when absent)
    settings: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)  # space, runtime, machine, calibration fit

    def predict(self, model_bytes: bytes) -> float:
        """Predicted latency (ms) of an ONNX model (default session options) at this table's input shape."""
        keys = graph_nodes(model_bytes, self.input_shape).keys
        missing = sorted({k for k in keys if k not in self.entries})
        if missing:
            ops = sorted({op_type(k) for k in missing})
            raise MissingLayers(
                f"{len(missing)} layer configurations ({', '.join(ops)}) are not in the table; profile this space again"
            )
        predicted = self.overhead_ms + sum(
            self.op_scales.get(op, 1.0) * ms for op, ms in op_sums(keys, self.entries).items()
        )
        return max(predicted, 1e-6)  # a fitted overhead or scale below zero must not make a negative time

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path, field_name: str = "devices.table") -> LatencyTable:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SpecError(field_name, str(path), f"a latency table written by `cosearch profile` ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise SpecError(field_name, str(path), f"a latency table written by `cosearch profile` (format {FORMAT!r})")
        data.pop("format")
        try:
            table = cls(**data)
            entries_ok = all(isinstance(v, (int, float)) and v >= 0 for v in table.entries.values())
            entries_ok = (
                entries_ok
                and all(isinstance(v, (int, float)) for v in table.op_scales.values())
                and isinstance(table.overhead_ms, (int, float))
            )
            shape_ok = len(table.input_shape) == 3 and all(isinstance(v, int) and v > 0 for v in table.input_shape)
        except (TypeError, AttributeError):
            entries_ok = shape_ok = False
        if not (entries_ok and shape_ok and table.entries):
            raise SpecError(
                field_name,
                str(path),
                "a table with input_shape [C, H, W], non-negative entries and numeric op_scales (malformed file)",
            )
        return table


def op_type(key: str) -> str:
    return json.loads(key)[1]


def op_sums(keys: Iterable[str], entries: dict[str, float]) -> dict[str, float]:
    """Sum of node costs per op type."""
    sums: dict[str, float] = {}
    for key in keys:
        op = op_type(key)
        sums[op] = sums.get(op, 0.0) + entries[key]
    return sums


def fit_calibration(
    per_op: Sequence[dict[str, float]], measured_ms: Sequence[float], ridge: float = 1e-3
) -> tuple[float, dict[str, float]]:
    """(overhead_ms, op_scales) of `measured = overhead + sum_op scale[op] * sum[op]`.

    Least squares on relative error (small networks count as much as large ones), with a light
    pull of every scale towards 1 so that op types seen in few networks keep their timed cost.
    Measured here (scripts/bench_latency.py): 98.5-100 % of fresh networks within 10 % at 32x32
    on all four spaces, against 82 % on NB201 for one overall scale and overhead. A scale may
    come out negative for an op type every network has once (it trades against the overhead);
    constraining scales to be >= 0 (non-negative least squares) was measured worse, 52-91 %.
    """
    measured = np.asarray(measured_ms, float)
    ops = sorted({op for sums in per_op for op in sums})
    x = np.array([[sums.get(op, 0.0) for op in ops] for sums in per_op]).reshape(len(measured), len(ops))
    rows = np.concatenate([np.ones((len(measured), 1)), x], axis=1) / measured[:, None]
    prior = np.concatenate([np.zeros((len(ops), 1)), np.eye(len(ops))], axis=1) * np.sqrt(ridge)
    a = np.concatenate([rows, prior])
    b = np.concatenate([np.ones(len(measured)), np.full(len(ops), np.sqrt(ridge))])
    solution, *_ = np.linalg.lstsq(a, b, rcond=None)
    return float(solution[0]), {op: float(v) for op, v in zip(ops, solution[1:])}


def profile(
    networks: Iterable[bytes],
    input_shape: Sequence[int],
    device: str,
    settings: LatencySettings = LatencySettings(),
    calibration: int = 40,
    patience: int = 40,
    passes: int = 3,
    listener: Callable[[dict[str, Any]], None] | None = None,
) -> LatencyTable:
    """Time every node configuration that `networks` (ONNX models) contain.

    Stops drawing networks once `patience` in a row bring no new configuration. The first
    `calibration` networks are also measured whole, to fit the fixed overhead and scale.
    Everything is timed in `passes` rounds, one after the other, keeping each item's lowest
    median: a machine that slows down for a while (other load, a busy neighbour VM) then spoils
    one round of an item rather than every later prediction that uses it.
    """
    if passes < 1:
        raise ValueError(f"passes {passes}: at least 1")
    nodes: dict[str, _NodeTiming] = {}
    whole: list[tuple[bytes, list[str]]] = []  # calibration networks: file, node keys
    seen_without_new = drawn = 0
    start = time.perf_counter()
    for model_bytes in networks:
        drawn += 1
        graph = graph_nodes(model_bytes, input_shape)
        new = [key for key in graph.nodes if key not in nodes]
        for key in new:
            nodes[key] = _NodeTiming(graph.nodes[key], graph)
        if len(whole) < calibration:
            whole.append((model_bytes, graph.keys))
        seen_without_new = 0 if new else seen_without_new + 1
        if listener:
            listener({"stage": "drawing networks", "networks": drawn, "entries": len(nodes), "calibration": len(whole)})
        if seen_without_new >= patience and len(whole) >= calibration:
            break
    if not nodes:
        raise ValueError("no networks to profile")
    measured = [float("inf")] * len(whole)
    for round_ in range(passes):
        for done, timing in enumerate(nodes.values()):
            timing.time(settings)
            if listener and done % 10 == 0:
                listener(
                    {
                        "stage": f"timing, round {round_ + 1} of {passes}",
                        "networks": drawn,
                        "entries": len(nodes),
                        "timed": done,
                        "calibration": len(whole),
                    }
                )
        for i, (model_bytes, _) in enumerate(whole):
            measured[i] = min(measured[i], measure_latency(model_bytes, input_shape, settings)["median_ms"])
    entries = {key: timing.cost_ms for key, timing in nodes.items()}
    sums = [op_sums(keys, entries) for _, keys in whole]
    overhead, scales = fit_calibration(sums, measured)
    predicted = np.array([overhead + sum(scales[op] * ms for op, ms in s.items()) for s in sums])
    errors = predicted / np.asarray(measured) - 1
    import onnxruntime as ort

    source = {
        "runtime": f"onnxruntime {ort.__version__} CPUExecutionProvider, all graph optimisations",
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "networks_drawn": drawn,
        "passes": passes,
        "calibration": {
            "networks": len(sums),
            "within_10pct": float(np.mean(np.abs(errors) <= 0.1)),
            "note": "in-sample; scripts/bench_latency.py tests fresh networks",
        },
        "profile_s": round(time.perf_counter() - start, 1),
    }
    return LatencyTable(device, [int(v) for v in input_shape], entries, overhead, scales, asdict(settings), source)


def candidate_graph(space: Any, candidate: Any, input_shape: Sequence[int], num_classes: int) -> bytes:
    """The ONNX file a candidate deploys as (untrained weights: the graph is what matters): built,
    channel-pruned, compressed, baked, deployed."""
    from cosearch.compressors import bake, compress, reshape
    from cosearch.hardware.qdq import deployment

    model = reshape(space.build(candidate.arch, input_shape, num_classes), candidate.policy, input_shape)
    return deployment(bake(compress(model, candidate.policy)), candidate.policy, input_shape)


def sampled_graphs(joint_space: Any, input_shape: Sequence[int], num_classes: int, seed: int, limit: int):
    """Deployed ONNX files of up to `limit` random candidates of a joint
    space, duplicates skipped."""
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    for _ in range(limit * 5):  # capped: small spaces run out of new candidates
        if len(seen) >= limit:
            return
        candidate = joint_space.decode(joint_space.sample(rng))
        if candidate.key in seen:
            continue
        seen.add(candidate.key)
        yield candidate_graph(joint_space.space, candidate, input_shape, num_classes)
