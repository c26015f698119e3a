"""Train a candidate, compress it by its policy, fine-tune, and measure it as deployed."""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from cosearch.compressors import Distillation
from cosearch.compressors.base import runs_integer, teacher_technique
from cosearch.core.candidate import Candidate
from cosearch.core.errors import EvaluationError
from cosearch.core.objectives import DEFAULT_DEVICE, Constraint
from cosearch.core.result import Result
from cosearch.evaluators.base import EVALUATORS, Evaluation, Evaluator
from cosearch.evaluators.data import Split, TeacherLogits, load_dataset, shifted_views, views_digest
from cosearch.hardware.costs import measure_here, predicted_costs
from cosearch.hardware.layers import bitops, layer_shapes
from cosearch.hardware.onnx_runtime import run_onnx
from cosearch.hardware.profiles import DeviceProfile, MeasuredDevice
from cosearch.hardware.qdq import deployment
from cosearch.job import CompressionMethod, TaskSpec, TrainingSpec
from cosearch.search_spaces.base import SearchSpace


class DataSettings(TaskSpec):
    """The job's `task` section and the run's seed (which fixes the splits)."""

    seed: int = 0

    def load(self):
        return load_dataset(self.dataset, self.path, self.val_fraction, self.test_fraction, self.seed, self.image_size)


class TrainingSettings(TrainingSpec):
    """The job's `training` section and the run's seed. `shift_px`: an epoch passes over every
    shift of the images up to that many pixels."""

    seed: int = 0


def training_device() -> Any:
    """Where this evaluation trains: the GPU Ray assigned its task, else the CPU.

    Ray gives a task with `num_gpus` its GPUs in CUDA_VISIBLE_DEVICES, so the first visible one
    is its own; a fractional share runs beside other trainings on the same GPU. A task given a
    GPU that PyTorch cannot use fails, rather than training on the CPU for hours unnoticed."""
    import torch

    gpus = _ray_gpu_ids()
    if not gpus:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise EvaluationError(
            f"Ray assigned GPU {gpus} to this evaluation (resources.gpus_per_trial), but PyTorch sees no CUDA device "
            f"here (torch {torch.__version__}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}): install "
            "a CUDA build of torch on the GPU nodes, or set gpus_per_trial: 0"
        )
    return torch.device("cuda", 0)


def describe_device(device: Any) -> str:
    import torch

    return f"cuda ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "cpu"


def _ray_gpu_ids() -> list[Any]:
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - outside a Ray task there is no assignment
        return []


def batch_indices(split: Split, batch_size: int, rng: np.random.Generator | None):
    order = rng.permutation(len(split.y)) if rng is not None else np.arange(len(split.y))
    stop = len(order) - (len(order) % batch_size if rng is not None and len(order) > batch_size else 0)
    for start in range(0, stop, batch_size):  # training drops the ragged last batch (BatchNorm needs > 1 sample)
        yield order[start : start + batch_size]


def train_epochs(
    model: Any,
    split: Split,
    epochs: int,
    learning_rate: float,
    settings: TrainingSettings,
    seed: int,
    distillation: Distillation | None = None,
    device: Any = None,
    max_steps: int | None = None,
    trained: bool = False,
) -> None:
    """Adam with a cosine schedule on `device` (default the CPU); raises EvaluationError when the
    loss stops being finite. The split is moved there once, and batches are cut from it there;
    the model is left on the CPU afterwards, where compression and export happen. `max_steps`
    stops (and ends the schedule) after that many steps. `trained`: a fine-tune of a trained
    network, so a distillation loss needs no warm-up (it hears progress 1 from the first step)."""
    import torch
    import torch.nn.functional as F

    if epochs <= 0:
        return
    device = torch.device("cpu") if device is None else device
    rng = np.random.default_rng(seed)
    model.to(device)
    x, y = torch.from_numpy(split.x).to(device), torch.from_numpy(split.y).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=settings.weight_decay)
    steps = epochs * max(1, len(split.y) // settings.batch_size)
    steps = steps if max_steps is None else min(steps, max_steps)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    done = 0
    try:
        for epoch in range(epochs):
            for idx in batch_indices(split, settings.batch_size, rng):
                if done == steps:
                    return
                done += 1
                rows = torch.from_numpy(idx).to(device)
                logits, labels = model(x[rows]), y[rows]
                if distillation:
                    loss = distillation.loss(logits, labels, idx, 1.0 if trained else (done - 1) / steps)
                else:
                    loss = F.cross_entropy(logits, labels)
                if not torch.isfinite(loss):
                    raise EvaluationError(f"loss became {loss.item()} in epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    finally:
        model.to("cpu")


def predict(model: Any, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    import torch

    model.eval()
    with torch.no_grad():
        return np.concatenate(
            [model(torch.from_numpy(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        )


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(axis=1) == labels).mean())


def serialize_state(model: Any) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


Measure = Callable[[MeasuredDevice, bytes, Sequence[int], dict[str, str]], dict[str, Any]]


class CompressionSettings(CompressionMethod):
    """The job's compression method (channel importance, calibration, LSQ) and how many training
    images calibrate (Taylor importance takes its gradients there too)."""

    calibration_images: int = Field(256, ge=1)

    def images(self, data) -> np.ndarray:
        """The calibration images: the first `calibration_images` of the training split."""
        return data.train.x[: self.calibration_images]


@EVALUATORS.register("train")
class TrainEvaluator(Evaluator):
    """Cost first, then train from scratch, compress (prune, then fake-quantize), fine-tune, measure.

    Costs come before training: the cheap ones (size, BitOps, lookup-table and analytic device
    models), then the measured latencies. With `prefilter` on, a candidate over a budget at
    either step is stored as infeasible with its costs and never trained.
    """

    needs = frozenset({"data", "training", "devices", "budgets", "teacher_logits", "temperature", "compression"})

    def __init__(
        self,
        space: SearchSpace,
        data: DataSettings = DataSettings(),
        training: TrainingSettings = TrainingSettings(),
        devices: Sequence[DeviceProfile] = (MeasuredDevice(DEFAULT_DEVICE),),
        budgets: tuple[Constraint, ...] = (),
        teacher_logits: TeacherLogits | np.ndarray | None = None,
        temperature: float = 2.0,
        prefilter: bool = True,
        compression: CompressionSettings = CompressionSettings(),
    ) -> None:
        if not isinstance(prefilter, bool):
            raise ValueError(f"`prefilter` must be true or false, but got {prefilter!r}")
        self.space, self.data, self.training, self.devices = space, data, training, tuple(devices)
        self.compression = compression
        self.budgets, self.prefilter = tuple(budgets), prefilter
        if teacher_logits is not None and not isinstance(teacher_logits, TeacherLogits):
            teacher_logits = TeacherLogits(np.asarray(teacher_logits))
        self.teacher, self.temperature = teacher_logits, temperature
        self.trained_on = "cpu"  # where the latest build_trained trained, for its result's record
        self.remote_measure: dict[str, Measure] = {}  # device name -> how to measure there (see `route`)

    def route(self, device: str, measure: Measure) -> None:
        self.remote_measure[device] = measure

    def distillation(self, candidate: Candidate) -> Distillation | None:
        """The training loss of the teacher-using technique the policy turns on, or None."""
        found = teacher_technique(candidate.policy)
        if found is None:
            return None
        technique, value = found
        if self.teacher is None:
            raise EvaluationError(f"the policy asks for {technique.name} but the run has no teacher logits")
        return technique.training_loss(value, self.teacher.values, self.temperature)

    def deployable(self, model: Any, candidate: Candidate, input_shape) -> tuple[Any, bytes]:
        """The pruned, compressed, baked model and its ONNX file."""
        from cosearch.compressors import bake, compress, reshape

        shaped = reshape(model, candidate.policy, input_shape)  # a copy: `model` is trained next
        plain = bake(compress(shaped, candidate.policy, copy=False), copy=False)
        return plain, deployment(plain, candidate.policy, input_shape)

    def predicted_costs(
        self, plain: Any, onnx_bytes: bytes, candidate: Candidate, input_shape
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Size, BitOps and every lut / analytic device's costs: cheap, and none needs training.

        Size counts non-zeros, and magnitude pruning removes an exact number of weights per
        layer; the graph (so latency) does not change with training either.
        """
        from cosearch.compressors import size_bytes

        layers = layer_shapes(plain, input_shape, candidate.policy)
        metrics = {"size_kb": size_bytes(plain, candidate.policy) / 1024, "bitops": bitops(layers)}
        how: dict[str, Any] = {
            "size_kb": {"how": "non-zeros x weight bits + 1-bit masks + fp32 scales per channel + fp32 others"},
            "bitops": {
                "how": "sum of MACs x weight bits x input activation bits (float = 32) over conv / linear layers"
            },
        }
        device_metrics, device_how = predicted_costs(self.devices, onnx_bytes, layers)
        return {**metrics, **device_metrics}, {**how, **device_how}

    def measured_costs(self, onnx_bytes: bytes, input_shape) -> tuple[dict[str, float], dict[str, Any]]:
        metrics, how = {}, {}
        graph = "measured before training" if self.costs_first else "the one whose accuracy is measured"
        for device in self.devices:
            if device.measured:
                out = self.remote_measure.get(device.name, measure_here)(device, onnx_bytes, input_shape)
                metrics[f"latency_ms@{device.name}"] = out["value_ms"]
                how[f"latency_ms@{device.name}"] = {
                    **out,
                    "graph": f"the candidate's deployed ONNX file, {graph}",
                }
        return metrics, how

    def costs(self, candidate: Candidate, data) -> dict[str, float]:
        """Every cost of `candidate` that needs no training (predicted, then measured on its
        deployed ONNX file), as `evaluate` computes them before it trains."""
        model = self.space.build(candidate.arch, data.input_shape, data.num_classes)
        plain, onnx_bytes = self.deployable(model, candidate, data.input_shape)
        predicted, _ = self.predicted_costs(plain, onnx_bytes, candidate, data.input_shape)
        measured, _ = self.measured_costs(onnx_bytes, data.input_shape)
        return {**predicted, **measured}

    def over_budget(self, metrics: dict[str, float]) -> list[str]:
        return [str(c) for c in self.budgets if c.metric in metrics and c.violation(metrics[c.metric]) > 0]

    def seed_of(self, candidate: Candidate) -> int:
        """The training seed of `candidate`: its key and the run's seed, so reruns repeat it."""
        return (int(candidate.key[:8], 16) + self.training.seed) % (2**31)

    def initial_model(self, candidate: Candidate, data) -> Any:
        """The network training starts from: a fresh one, with the space's initial weights if it has any."""
        return self.space.initial_weights(self.space.build(candidate.arch, data.input_shape, data.num_classes))

    def build_trained(self, candidate: Candidate, model: Any = None):
        """The compressed, fine-tuned PyTorch model of `candidate` and its timings."""
        import torch

        timings: dict[str, float] = {}
        seed = self.seed_of(candidate)
        torch.manual_seed(seed)
        data = self.data.load()
        start = time.perf_counter()
        if model is None:
            model = self.initial_model(candidate, data)
        distillation = self.distillation(candidate)
        train = shifted_views(data.train, self.training.shift_px)
        if distillation and len(distillation.teacher_logits) != len(train.y):
            raise EvaluationError(
                f"the teacher logits have {len(distillation.teacher_logits)} rows but training has {len(train.y)} images "
                f"(shift_px {self.training.shift_px}); they must come from the same training split and views"
            )
        if distillation and self.teacher.views is not None and self.teacher.views != views_digest(train):
            raise EvaluationError(
                "the teacher logits were computed on other training images than this evaluation trains on "
                f"(another split, order or view; shift_px {self.training.shift_px}): row i would teach the wrong image"
            )
        device = training_device()
        self.trained_on = describe_device(device)
        model = self.train(model, candidate, train, seed, distillation, device)
        timings["train_s"] = time.perf_counter() - start
        start = time.perf_counter()
        compressed = self.compress_trained(model, candidate, data, train, seed + 1, distillation, device)
        timings["compress_s"] = time.perf_counter() - start
        return compressed, data, timings

    def train(self, model: Any, candidate: Candidate, train, seed: int, distillation, device) -> Any:
        """`model` trained for the job's `epochs` from where `initial_model` left it."""
        lr = self.training.learning_rate
        train_epochs(model, train, self.training.epochs, lr, self.training, seed, distillation, device)
        return model

    def compress_trained(self, model: Any, candidate: Candidate, data, train, seed: int, distillation, device) -> Any:
        """Prune, factorise and fake-quantize a trained `model` as the policy says, calibrate its
        activation ranges, then fine-tune it (`finetune`). `model` is not used again: it may be
        compressed in place."""
        import torch

        from cosearch.compressors import calibrate, compress, reshape

        # Structure first (channels chosen, layers factorised on trained weights), then masks and bits.
        c = self.compression
        images = torch.from_numpy(c.images(data))
        batch = (images, torch.from_numpy(data.train.y[: c.calibration_images]))
        shaped = reshape(model, candidate.policy, data.input_shape, self.channel_importance, batch, copy=False)
        compressed = compress(shaped, candidate.policy, c.learn_activation_scales, copy=False)
        self.before_calibration(compressed, candidate, train)
        calibrate(
            compressed, torch.split(images, self.training.batch_size), c.calibration
        )  # activation ranges, post-training
        self.finetune(compressed, train, seed, distillation, device)
        return compressed

    @property
    def channel_importance(self) -> str:
        """Which channels structured pruning removes (`compression.channel_importance`)."""
        return self.compression.channel_importance

    def before_calibration(self, compressed: Any, candidate: Candidate, train) -> None:
        """A step between compression and the activation ranges' calibration: none here."""

    def finetune(self, compressed: Any, train, seed: int, distillation, device) -> None:
        """Quantization-aware fine-tuning for the job's `finetune_epochs`."""
        if self.training.finetune_epochs > 0:
            lr, epochs = self.training.finetune_learning_rate, self.training.finetune_epochs
            train_epochs(compressed, train, epochs, lr, self.training, seed, distillation, device, trained=True)

    def training_record(self) -> dict[str, Any]:
        """How the latest candidate was trained, for its result's `measured.training`."""
        return {**self.training.model_dump(), "device": self.trained_on}

    def provides(self) -> set[str]:
        return {"accuracy", "size_kb", "bitops"} | {m for device in self.devices for m in device.metrics()}

    # Costs come before training, so that a candidate over a budget is never trained. An evaluator
    # whose training is cheaper than a second export (a supernet's inheritance) prices the one file
    # it deploys after training instead.
    costs_first = True

    def priced(
        self, plain: Any, onnx_bytes: bytes, candidate: Candidate, input_shape, timings: dict[str, float]
    ) -> tuple[dict[str, float], dict[str, Any], str | None]:
        """Every cost of the deployed `onnx_bytes` (predicted, then measured), how each was
        obtained, and why `prefilter` stops a candidate over a budget (None: it goes on)."""
        when = "before training" if self.costs_first else "before its accuracy was measured"
        start = time.perf_counter()
        costs, how = self.predicted_costs(plain, onnx_bytes, candidate, input_shape)
        timings["predict_s"] = timings.get("predict_s", 0.0) + time.perf_counter() - start
        for stage in ("predicted", "measured"):
            if stage == "measured":
                start = time.perf_counter()
                measured_metrics, measured_how = self.measured_costs(onnx_bytes, input_shape)
                costs, how = {**costs, **measured_metrics}, {**how, **measured_how}
                timings["measure_s"] = time.perf_counter() - start
            over = self.over_budget(costs)
            if over and self.prefilter:  # known to break a budget before its accuracy: never trained further
                how.update(over_budget=over, over_budget_stage=stage)
                return costs, how, f"over budget {when} ({stage} costs): {', '.join(over)}"
        return costs, how, None

    def evaluate(self, candidate: Candidate) -> Evaluation:
        import torch

        from cosearch.compressors import bake, size_bytes

        torch.set_num_threads(1)  # one core per evaluation; Ray runs `concurrency` of them side by side
        start_all = time.perf_counter()
        timings: dict[str, float] = {}
        try:
            seed = self.seed_of(candidate)
            torch.manual_seed(seed)
            data = self.data.load()
            model = self.initial_model(candidate, data)
            if self.costs_first:
                start = time.perf_counter()
                plain, onnx_bytes = self.deployable(model, candidate, data.input_shape)
                timings["predict_s"] = time.perf_counter() - start
                costs, how, over = self.priced(plain, onnx_bytes, candidate, data.input_shape, timings)
                if over is not None:
                    timings["total_s"] = time.perf_counter() - start_all
                    return Evaluation(Result(candidate, "infeasible", costs, over, timings, how))
            compressed, data, train_timings = self.build_trained(candidate, model)
            timings.update(train_timings)
            start = time.perf_counter()
            # The accuracy shown is the deployed file's in ONNX Runtime: integer kernels can differ
            # from the fake-quantized PyTorch model (saturation), and this catches it. Float and
            # weight-only files run float kernels, which cannot saturate, so only integer ones are compared.
            integer = runs_integer(candidate.policy)
            torch_accuracy = accuracy(predict(compressed, data.val.x), data.val.y) if integer else None
            plain = bake(compressed, copy=False)  # `compressed` is not used again
            c = self.compression  # layer outputs calibrated as the inputs were, so integer kernels run
            onnx_bytes = deployment(
                plain, candidate.policy, data.input_shape, images=c.images(data), calibration=c.calibration
            )
            deploy_s = time.perf_counter() - start
            if not self.costs_first:
                costs, how, over = self.priced(plain, onnx_bytes, candidate, data.input_shape, timings)
                if over is not None:
                    timings["total_s"] = time.perf_counter() - start_all
                    return Evaluation(Result(candidate, "infeasible", costs, over, timings, how))
            start = time.perf_counter()
            val_accuracy = accuracy(run_onnx(onnx_bytes, data.val.x), data.val.y)
            metrics = {**costs, "accuracy": val_accuracy, "size_kb": size_bytes(plain, candidate.policy) / 1024}
            timings["accuracy_s"] = deploy_s + time.perf_counter() - start
            timings["total_s"] = time.perf_counter() - start_all
            if not all(math.isfinite(v) for v in metrics.values()):
                raise EvaluationError(f"non-finite metrics {metrics}")
            how["accuracy"] = {
                "split": "val",
                "samples": len(data.val.y),
                "model": "the deployed ONNX file in ONNX Runtime",
                "session_options": "ONNX Runtime defaults",
            }
            if integer:
                how["accuracy"]["pytorch_fake_quantized"] = torch_accuracy
                how["activations"] = self.compression.model_dump()
            how["training"] = self.training_record()
            return Evaluation(Result(candidate, "ok", metrics, None, timings, how), serialize_state(plain))
        except Exception as error:  # noqa: BLE001 - a failing candidate is a failed result, never a dead search
            timings = {"total_s": time.perf_counter() - start_all}
            return Evaluation(Result.failed(candidate, f"{type(error).__name__}: {error}", timings))
