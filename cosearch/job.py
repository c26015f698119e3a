"""The job file: YAML parsed into a validated, typed JobSpec.

Every mistake becomes one SpecError that names the field, the value and what is allowed;
nothing is written before a job validates.
"""

from __future__ import annotations

import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from cosearch.core.candidate import ACTIVATION_BITS, FLOAT_BITS
from cosearch.core.errors import SpecError
from cosearch.core.objectives import Constraint, Goals, Objective
from cosearch.evaluators.data import DATASETS, check_dataset_path


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class _Component(BaseModel):
    """A registered component: `name` plus the keyword arguments it takes (checked against it)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskSpec(_Section):
    dataset: str = "digits"
    path: str | None = None
    val_fraction: float = 0.2
    test_fraction: float = 0.2

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if value not in DATASETS:
            raise ValueError(f"allowed: one of {list(DATASETS)}")
        return value

    @field_validator("val_fraction", "test_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.05 <= value <= 0.5:
            raise ValueError("allowed: a fraction between 0.05 and 0.5")
        return value

    @model_validator(mode="after")
    def _path(self) -> TaskSpec:
        check_dataset_path(self.dataset, self.path)
        return self


class TeacherSpec(_Section):
    """The distillation teacher: a timm model, from a local checkpoint or trained once per run."""

    model: str = "resnet18"
    checkpoint: str | None = None
    epochs: int = 10

    @model_validator(mode="after")
    def _check(self) -> TeacherSpec:
        import timm

        if not timm.is_model(self.model):
            close = timm.list_models(f"*{self.model.split('_')[0][:6]}*")[:5]
            raise SpecError("compression.teacher.model", self.model, f"a timm model name, e.g. {close or ['resnet18']}")
        if self.checkpoint is not None and not Path(self.checkpoint).is_file():
            raise SpecError(
                "compression.teacher.checkpoint", self.checkpoint, "a local state-dict file (nothing is downloaded)"
            )
        if self.epochs < 1:
            raise SpecError("compression.teacher.epochs", self.epochs, "an integer >= 1")
        return self


CALIBRATIONS = ("minmax", "percentile", "mse", "kl")  # as cosearch.compressors.activations (torch-free here)


class CompressionSpec(_Section):
    weight_bits: list[int] = [4, 8, FLOAT_BITS]
    sparsity: list[float] = [0.0, 0.25, 0.5, 0.75]
    distill_alpha: list[float] = [0.0]  # weight of the teacher's soft labels; 0 = no distillation
    channel_ratio: list[float] = [0.0]  # share of channels structured pruning removes; 0 = none
    activation_bits: list[int] = [FLOAT_BITS]  # per layer input: 4, 8, or 32 (float)
    rank_ratio: list[float] = [1.0]  # per layer: low-rank factorisation of linear / 1x1 conv; 1 = none
    hash_ratio: list[float] = [1.0]  # per layer: hashed weight sharing, distinct weights per weight; 1 = none
    channel_importance: str = "l1"  # which channels structured pruning removes: l1 | l2 | taylor
    calibration: str = "minmax"  # activation ranges: minmax | percentile | mse | kl
    learn_activation_scales: bool = False  # LSQ: step sizes trained during fine-tuning
    temperature: float = 4.0
    teacher: TeacherSpec | None = None

    @model_validator(mode="after")
    def _choices(self) -> CompressionSpec:
        for name, values in (("weight_bits", self.weight_bits), ("sparsity", self.sparsity)):
            if not values or len(set(values)) != len(values):
                raise SpecError(f"compression.{name}", values, "a non-empty list of distinct values")
        for i, bits in enumerate(self.weight_bits):
            if not (2 <= bits <= 8 or bits == FLOAT_BITS):
                raise SpecError(f"compression.weight_bits[{i}]", bits, "integers 2..8, or 32 for float")
        for i, amount in enumerate(self.sparsity):
            if not 0.0 <= amount < 1.0:
                raise SpecError(f"compression.sparsity[{i}]", amount, "a fraction with 0 <= sparsity < 1")
        if not self.distill_alpha or len(set(self.distill_alpha)) != len(self.distill_alpha):
            raise SpecError("compression.distill_alpha", self.distill_alpha, "a non-empty list of distinct values")
        for i, alpha in enumerate(self.distill_alpha):
            if not 0.0 <= alpha <= 1.0:
                raise SpecError(f"compression.distill_alpha[{i}]", alpha, "a weight with 0 <= alpha <= 1")
        if not self.channel_ratio or len(set(self.channel_ratio)) != len(self.channel_ratio):
            raise SpecError("compression.channel_ratio", self.channel_ratio, "a non-empty list of distinct values")
        for i, ratio in enumerate(self.channel_ratio):
            if not 0.0 <= ratio <= 0.9:
                raise SpecError(f"compression.channel_ratio[{i}]", ratio, "a share of channels with 0 <= ratio <= 0.9")
        if not self.activation_bits or len(set(self.activation_bits)) != len(self.activation_bits):
            raise SpecError("compression.activation_bits", self.activation_bits, "a non-empty list of distinct values")
        for i, bits in enumerate(self.activation_bits):
            if bits not in ACTIVATION_BITS:
                raise SpecError(f"compression.activation_bits[{i}]", bits, "4, 8, or 32 for float")
        if not self.rank_ratio or len(set(self.rank_ratio)) != len(self.rank_ratio):
            raise SpecError("compression.rank_ratio", self.rank_ratio, "a non-empty list of distinct values")
        for i, ratio in enumerate(self.rank_ratio):
            if not 0.0 < ratio <= 1.0:
                raise SpecError(
                    f"compression.rank_ratio[{i}]", ratio, "a ratio with 0 < rank_ratio <= 1 (1 = not factorised)"
                )
        if not self.hash_ratio or len(set(self.hash_ratio)) != len(self.hash_ratio):
            raise SpecError("compression.hash_ratio", self.hash_ratio, "a non-empty list of distinct values")
        for i, ratio in enumerate(self.hash_ratio):
            if not 0.0 < ratio <= 1.0:
                raise SpecError(
                    f"compression.hash_ratio[{i}]", ratio, "a ratio with 0 < hash_ratio <= 1 (1 = not shared)"
                )
        if self.channel_importance not in ("l1", "l2", "taylor"):
            raise SpecError("compression.channel_importance", self.channel_importance, "one of ['l1', 'l2', 'taylor']")
        if self.calibration not in CALIBRATIONS:
            raise SpecError("compression.calibration", self.calibration, f"one of {list(CALIBRATIONS)}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise SpecError("compression.temperature", self.temperature, "a number > 0")
        return self

    @property
    def distills(self) -> bool:
        return any(self.distill_alpha)


MAX_SHIFT_PX = 4  # (2 * 4 + 1)^2 = 81 views of each image already


class TrainingSpec(_Section):
    epochs: int = 8
    finetune_epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 3e-3
    finetune_learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    shift_px: int = (
        0  # also train on the images shifted by up to this many pixels (fixed views, so a teacher labels each once)
    )

    @model_validator(mode="after")
    def _ranges(self) -> TrainingSpec:
        if not 0 <= self.shift_px <= MAX_SHIFT_PX:
            raise SpecError("training.shift_px", self.shift_px, f"an integer from 0 to {MAX_SHIFT_PX} (pixels)")
        for name in ("epochs", "finetune_epochs"):
            if getattr(self, name) < 0:
                raise SpecError(f"training.{name}", getattr(self, name), "an integer >= 0")
        if self.batch_size < 2:
            raise SpecError("training.batch_size", self.batch_size, "an integer >= 2")
        for name in ("learning_rate", "finetune_learning_rate", "weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0) or (name != "weight_decay" and value == 0):
                raise SpecError(f"training.{name}", value, "a finite number > 0" if name != "weight_decay" else ">= 0")
        return self


class LatencySpec(_Section):
    threads: int = 1
    batch_size: int = 1
    warmup_runs: int = 50  # fewer left the first measurements of a file ~40 % slow here
    runs: int = 100

    @model_validator(mode="after")
    def _ranges(self) -> LatencySpec:
        minimum = {"threads": 1, "batch_size": 1, "warmup_runs": 0, "runs": 30}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise SpecError(f"latency.{name}", getattr(self, name), f"an integer >= {low}")
        return self


class DeviceSpec(_Section):
    """One device: `kind` and the fields that kind takes (checked per kind in JobSpec)."""

    kind: str = "measured"
    resource: str | None = None  # measured: Ray custom resource of the nodes that have the device
    threads: int | None = None  # measured: these four default to the `latency` section
    batch_size: int | None = None
    warmup_runs: int | None = None
    runs: int | None = None
    statistic: str = "median"  # measured: median or p90
    table: str | None = None  # lut: a `cosearch profile` table; analytic: a BitFusion-style table
    activation_bits: int = 8  # analytic


DEVICE_FIELDS = {
    "measured": {"resource", "threads", "batch_size", "warmup_runs", "runs", "statistic"},
    "lut": {"table"},
    "analytic": {"table", "activation_bits"},
}

DEVICE_METRIC_KINDS = {"measured": ("latency_ms",), "lut": ("latency_ms",), "analytic": ("latency_ms", "energy_mj")}


class ResourcesSpec(_Section):
    trials: int = 24
    concurrency: int = 2
    address: str | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _ranges(self) -> ResourcesSpec:
        if self.trials < 1:
            raise SpecError("resources.trials", self.trials, "an integer >= 1")
        if self.concurrency < 1:
            raise SpecError("resources.concurrency", self.concurrency, "an integer >= 1")
        return self


class JobSpec(_Section):
    name: str = "search"
    task: TaskSpec = TaskSpec()
    search_space: _Component = _Component(name="nb201")
    compression: CompressionSpec = CompressionSpec()
    strategy: _Component = _Component(name="regularized_evolution")
    evaluator: _Component = _Component(name="train")
    objectives: list[str] = ["accuracy", "latency_ms", "size_kb"]
    budgets: list[str] = []
    training: TrainingSpec = TrainingSpec()
    latency: LatencySpec = LatencySpec()
    devices: dict[str, DeviceSpec] = {}
    profiles: str | None = None  # a YAML file with more `devices`, e.g. shared by a team
    resources: ResourcesSpec = ResourcesSpec()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value):
            raise ValueError("allowed: letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="after")
    def _components(self) -> JobSpec:
        self.goals()
        self.device_profiles()
        self._check_teacher_checkpoint()
        self.make_space()
        self.validate_strategy()
        self.validate_evaluator()
        return self

    # --- the typed pieces the rest of cosearch consumes ---------------------------------
    def goals(self) -> Goals:
        if not self.objectives:
            raise SpecError("objectives", self.objectives, "at least one of accuracy, latency_ms, size_kb")
        objectives = tuple(Objective.parse(name, f"objectives[{i}]") for i, name in enumerate(self.objectives))
        if len({o.metric for o in objectives}) != len(objectives):
            raise SpecError("objectives", self.objectives, "each metric at most once")
        constraints = tuple(Constraint.parse(text, f"budgets[{i}]") for i, text in enumerate(self.budgets))
        return Goals(objectives, constraints)

    def _check_teacher_checkpoint(self) -> None:
        """A teacher checkpoint must fit the task: its classes and input channels."""
        teacher = self.compression.teacher
        if teacher is None or teacher.checkpoint is None:
            return
        import timm
        import torch

        from cosearch.evaluators.data import INPUT_SHAPES, NUM_CLASSES

        classes, channels = NUM_CLASSES[self.task.dataset], INPUT_SHAPES[self.task.dataset][0]
        model = timm.create_model(teacher.model, pretrained=False, num_classes=classes, in_chans=channels)
        field = "compression.teacher.checkpoint"
        try:
            state = torch.load(teacher.checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same user mistake
            raise SpecError(
                field, teacher.checkpoint, f"a state dict saved with torch.save ({type(error).__name__})"
            ) from None
        expected = model.state_dict()
        if not isinstance(state, dict) or set(state) != set(expected):
            raise SpecError(field, teacher.checkpoint, f"a state dict of timm's {teacher.model!r} (its keys differ)")
        classifier = model.get_classifier()
        head = next(name for name, p in model.named_parameters() if p is getattr(classifier, "weight", None))
        if tuple(state[head].shape) != tuple(expected[head].shape):
            raise SpecError(
                field,
                teacher.checkpoint,
                f"a teacher with the task's {classes} classes ({head} {list(expected[head].shape)}), not {list(state[head].shape)}",
                problem=f"the teacher has {state[head].shape[0]} output classes",
            )
        bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
        if bad:
            raise SpecError(
                field,
                teacher.checkpoint,
                f"weights shaped for {channels}-channel {self.task.dataset} inputs ({bad[0]} differs)",
            )

    def device_profiles(self) -> dict[str, Any]:
        """Every device this job knows: built in (`local-cpu`), from `profiles`, and declared here."""
        from cosearch.hardware.profiles import builtin_devices

        specs: dict[str, tuple[str, DeviceSpec, Path | None]] = {}
        if self.profiles is not None:
            for name, spec in _read_profiles(self.profiles).items():
                specs[name] = (f"profiles ({self.profiles}): devices.{name}", spec, Path(self.profiles).parent)
        for name, spec in self.devices.items():
            if name in specs:
                raise SpecError(
                    f"devices.{name}", name, f"a name not already declared in {self.profiles}", problem="declared twice"
                )
            specs[name] = (f"devices.{name}", spec, None)
        profiles = builtin_devices(self._latency_settings())
        profiles.update({name: self._device(name, *entry) for name, entry in specs.items()})
        return profiles

    def _latency_settings(self, spec: DeviceSpec | None = None):
        from cosearch.hardware import LatencySettings

        values = self.latency.model_dump()
        for key in values:
            if spec is not None and getattr(spec, key, None) is not None:
                values[key] = getattr(spec, key)
        return LatencySettings(**values)

    def _device(self, name: str, field: str, spec: DeviceSpec, base: Path | None):
        from cosearch.evaluators.data import INPUT_SHAPES
        from cosearch.hardware.analytic import load_bitfusion
        from cosearch.hardware.lut import LatencyTable
        from cosearch.hardware.profiles import KINDS, AnalyticDevice, LutDevice, MeasuredDevice

        if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
            raise SpecError(field, name, "a device name of letters, digits, '-', '_' and '.'")
        if spec.kind not in KINDS:
            raise SpecError(f"{field}.kind", spec.kind, f"one of {list(KINDS)}")
        given = {
            key for key, info in DeviceSpec.model_fields.items() if getattr(spec, key) != info.default
        }  # stored jobs hold defaults too
        for key in sorted(given - {"kind"} - DEVICE_FIELDS[spec.kind]):
            raise SpecError(
                f"{field}.{key}",
                getattr(spec, key),
                f"fields of a {spec.kind} device: {sorted(DEVICE_FIELDS[spec.kind])}",
                problem="not used by this kind",
            )
        if spec.kind == "measured":
            for key in ("threads", "batch_size", "warmup_runs", "runs"):
                low = {"warmup_runs": 0, "runs": 30}.get(key, 1)
                if getattr(spec, key) is not None and getattr(spec, key) < low:
                    raise SpecError(f"{field}.{key}", getattr(spec, key), f"an integer >= {low}")
            if spec.statistic not in ("median", "p90"):
                raise SpecError(f"{field}.statistic", spec.statistic, "median or p90")
            if spec.resource is not None and not spec.resource.strip():
                raise SpecError(f"{field}.resource", spec.resource, "a Ray custom resource name, e.g. device:rpi4")
            return MeasuredDevice(name, self._latency_settings(spec), spec.statistic, spec.resource)  # type: ignore[arg-type]
        if spec.table is None:
            raise SpecError(f"{field}.table", None, f"the path of the {spec.kind} device's table", problem="missing")
        table = str(base / spec.table) if base is not None and not Path(spec.table).is_absolute() else spec.table
        if not Path(table).is_file():
            raise SpecError(f"{field}.table", table, "an existing table file")
        if spec.kind == "lut":
            lut = LatencyTable.load(table, f"{field}.table")
            expected = list(INPUT_SHAPES[self.task.dataset])
            if lut.input_shape != expected:
                raise SpecError(
                    f"{field}.table",
                    table,
                    f"a table profiled at the task's input shape {expected}, not {lut.input_shape}",
                )
            return LutDevice(name, table)
        if spec.activation_bits not in range(2, 9):
            raise SpecError(f"{field}.activation_bits", spec.activation_bits, "an integer 2..8")
        try:
            load_bitfusion(table)
        except SpecError as error:
            raise SpecError(f"{field}.table", table, error.allowed) from None
        return AnalyticDevice(name, table, spec.activation_bits)

    def evaluated_devices(self) -> list[Any]:
        """The devices each candidate is costed on: every declared one, and `local-cpu` when named."""
        from cosearch.core.objectives import DEFAULT_DEVICE

        profiles = self.device_profiles()
        named = {m.partition("@")[2] for m in self.goals().metrics}
        return [p for name, p in profiles.items() if name != DEFAULT_DEVICE or name in named or name in self.devices]

    def make_space(self):
        from cosearch.search_spaces import SEARCH_SPACES

        SEARCH_SPACES.get(self.search_space.name)
        SEARCH_SPACES.check_params(self.search_space.name, self.search_space.params, "search_space")
        return _construct(SEARCH_SPACES, self.search_space, "search_space")

    def make_joint_space(self):
        from cosearch.search_spaces import JointSpace

        c = self.compression
        return JointSpace(
            self.make_space(),
            c.weight_bits,
            c.sparsity,
            c.distill_alpha,
            c.channel_ratio,
            c.activation_bits,
            c.rank_ratio,
            c.hash_ratio,
        )

    def validate_strategy(self) -> None:
        from cosearch.strategies import CONTROLLER_ARGS, STRATEGIES

        STRATEGIES.get(self.strategy.name)
        STRATEGIES.check_params(self.strategy.name, self.strategy.params, "strategy", skip=CONTROLLER_ARGS)
        self.make_strategy()

    def make_strategy(self):
        from cosearch.strategies import STRATEGIES

        kwargs = {"space": self.make_joint_space(), "goals": self.goals(), "seed": self.resources.seed}
        return _construct(STRATEGIES, self.strategy, "strategy", **kwargs)

    def validate_evaluator(self) -> None:
        from cosearch.evaluators import EVALUATORS

        EVALUATORS.get(self.evaluator.name)
        fixed = ("space", "data", "training", "devices", "budgets", "teacher_logits", "temperature", "compression")
        EVALUATORS.check_params(self.evaluator.name, self.evaluator.params, "evaluator", skip=fixed)
        evaluator = self.make_evaluator()
        provided = evaluator.provides()
        named = [(f"objectives[{i}]", o.metric) for i, o in enumerate(self.goals().objectives)]
        named += [(f"budgets[{i}]", c.metric) for i, c in enumerate(self.goals().constraints)]
        profiles = self.device_profiles()
        devices = profiles if self.evaluator.name == "train" else {}  # only the train evaluator costs devices
        known = set(profiles) | {m.partition("@")[2] for m in provided if "@" in m}
        for field, metric in named:
            if metric in provided:
                continue
            base, _, device = metric.partition("@")
            if device and device not in known:
                raise SpecError(
                    field,
                    metric,
                    f"a device this job declares (devices: ...): {sorted(known)}",
                    problem=f"unknown device {device!r}",
                )
            if device in devices:
                kinds = [kind for kind, bases in DEVICE_METRIC_KINDS.items() if base in bases]
                offers = [m.partition("@")[0] for m in devices[device].metrics()]
                raise SpecError(
                    field,
                    metric,
                    f"{devices[device].kind} devices provide {offers}; {base} comes from {kinds or 'no'} devices",
                    problem=f"device {device!r} does not provide {base}",
                )
            raise SpecError(
                field, metric, f"a metric the {self.evaluator.name!r} evaluator provides: {sorted(provided)}"
            )
        c = self.compression
        trivial = (
            c.weight_bits == [FLOAT_BITS]
            and c.sparsity == [0.0]
            and not c.distills
            and c.channel_ratio == [0.0]
            and c.activation_bits == [FLOAT_BITS]
            and c.rank_ratio == [1.0]
            and c.hash_ratio == [1.0]
        )
        if not evaluator.evaluates_policy and not trivial:
            raise SpecError(
                "compression",
                self.compression.model_dump(),
                f"weight_bits: [32], sparsity: [0.0], distill_alpha: [0.0], channel_ratio: [0.0], since the {self.evaluator.name!r} evaluator ignores compression",
            )

    def data_settings(self):
        from cosearch.evaluators.train import DataSettings

        t = self.task
        return DataSettings(t.dataset, t.path, t.val_fraction, t.test_fraction, self.resources.seed)

    def training_settings(self):
        from cosearch.evaluators.train import TrainingSettings

        return TrainingSettings(**self.training.model_dump(), seed=self.resources.seed)

    def compression_settings(self):
        from cosearch.evaluators.train import CompressionSettings

        c = self.compression
        return CompressionSettings(
            c.channel_importance, c.calibration, learn_activation_scales=c.learn_activation_scales
        )

    def make_evaluator(self, teacher_logits: Any = None):
        from cosearch.evaluators import EVALUATORS

        params: dict[str, Any] = {"space": self.make_space()}
        if "seed" in EVALUATORS.parameters(self.evaluator.name) and "seed" not in self.evaluator.params:
            params["seed"] = self.resources.seed
        if self.evaluator.name == "train":
            params["data"] = self.data_settings()
            params["training"] = self.training_settings()
            params["devices"] = tuple(self.evaluated_devices())
            params["budgets"] = self.goals().constraints
            params["teacher_logits"] = teacher_logits
            params["temperature"] = self.compression.temperature
            params["compression"] = self.compression_settings()
        return _construct(EVALUATORS, self.evaluator, "evaluator", **params)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _read_profiles(path: str) -> dict[str, DeviceSpec]:
    """The `devices` mapping of a profiles file."""
    if not Path(path).is_file():
        raise SpecError("profiles", path, "an existing YAML file with a `devices:` mapping")
    data = _read_yaml(Path(path))
    if not isinstance(data, dict) or set(data) != {"devices"} or not isinstance(data["devices"], dict):
        raise SpecError("profiles", path, "a YAML file holding one mapping, `devices: {NAME: {kind: ...}}`")
    out = {}
    for name, spec in data["devices"].items():
        try:
            out[str(name)] = DeviceSpec.model_validate(spec if spec is not None else {})
        except ValidationError as error:
            first = error.errors()[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SpecError(f"profiles ({path}): devices.{name}.{loc}", first.get("input"), str(first["msg"])) from None
    return out


def _construct(registry, component: _Component, field: str, **fixed: Any):
    try:
        return registry.create(component.name, **fixed, **component.params)
    except SpecError:
        raise
    except (TypeError, ValueError) as error:
        # Components word their checks "`RULE` must hold, but got NAME=VALUE": name that field.
        named = re.search(r"`(.+)` must hold, but got (\w+)=", str(error))
        if named and named.group(2) in component.params:
            key = named.group(2)
            raise SpecError(f"{field}.{key}", component.params[key], named.group(1)) from None
        raise SpecError(field, component.params, str(error)) from None


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "job"


def spec_from_dict(data: Any, source: str = "job") -> JobSpec:
    """Validate a parsed job mapping; every error is one SpecError naming field, value, allowed."""
    if not isinstance(data, dict):
        raise SpecError(source, type(data).__name__, "a YAML mapping of sections (task, search_space, ...)")
    try:
        return JobSpec.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        loc = _location(tuple(first["loc"]))
        cause = first.get("ctx", {}).get("error")
        if isinstance(cause, SpecError):
            raise cause from None
        if first["type"] == "extra_forbidden":
            parent = _section_fields(tuple(first["loc"])[:-1])
            raise SpecError(loc, first["input"], f"one of {parent}", problem="unknown key") from None
        if first["type"] == "missing":
            raise SpecError(loc, None, "a value", problem="missing") from None
        message = str(first["msg"]).removeprefix("Value error, ").removeprefix("allowed: ")
        allowed = _TYPE_WORDS.get(first["type"].split("_")[0], message)
        raise SpecError(loc, first.get("input"), allowed) from None


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "list": "a list",
    "bool": "true or false",
    "dict": "a mapping",
    "model": "a mapping",
}


def _section_fields(loc: tuple[Any, ...]) -> list[str]:
    """The keys the section at `loc` takes (through lists, Optional and the names of a dict)."""
    model: Any = JobSpec
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is not None and part in fields:
            model = fields[part].annotation
        elif typing.get_origin(model) in (dict, list):
            model = typing.get_args(model)[-1]  # a dict's value type, a list's item type
        else:
            return []
        while typing.get_origin(model) in (typing.Union, types.UnionType):
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return sorted(model.model_fields) if hasattr(model, "model_fields") else []


def profiling_job(path: str | Path | None, space: str | None = None) -> JobSpec:
    """The parts of a job that `cosearch profile` uses: task, space, compression, measured devices.

    Objectives, budgets and table devices are left out, so a job can name the table that
    profiling is about to write.
    """
    data: dict[str, Any] = {"search_space": {"name": space or "nb201"}}
    if path is not None:
        full = _read_yaml(Path(path))
        if not isinstance(full, dict):
            return spec_from_dict(full, str(path))  # raises the usual message
        data = {key: full[key] for key in ("task", "search_space", "compression", "latency") if key in full}
        devices = full.get("devices") or {}
        if isinstance(devices, dict):
            data["devices"] = {
                name: spec
                for name, spec in devices.items()
                if not isinstance(spec, dict) or spec.get("kind", "measured") == "measured"
            }
        data["objectives"] = ["accuracy"]
    return spec_from_dict(data, str(path or "profile"))


MAX_JOB_BYTES = 1 << 20  # a job file is a page of YAML; 1 MiB is far past any real one
MAX_YAML_NODES = 100_000  # values after aliases are expanded (a "billion laughs" file is tiny on disk)
MAX_LIST_ITEMS = 10_000


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, but a key given twice in one mapping is an error, not the last one winning."""

    source = "job file"


def _mapping_without_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in seen:
                raise SpecError(
                    f"{loader.source}, line {key_node.start_mark.line + 1}",
                    key,
                    "each key once per mapping",
                    problem=f"key given twice (first on line {seen[key] + 1})",
                )
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key; the schema will name it
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def _check_size(data: Any, source: str) -> None:
    """Refuse a parsed job too large to be a job (after aliases), before anything walks it twice."""
    count, stack = 0, [data]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_YAML_NODES:
            raise SpecError(
                source,
                f"over {MAX_YAML_NODES} values",
                f"a job file of at most {MAX_YAML_NODES} values (with YAML aliases expanded)",
            )
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            if len(node) > MAX_LIST_ITEMS:
                raise SpecError(source, f"a list of {len(node)} items", f"lists of at most {MAX_LIST_ITEMS} items")
            stack.extend(node)


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise SpecError("job file", str(path), "an existing YAML file")
    size = path.stat().st_size
    if size > MAX_JOB_BYTES:
        raise SpecError(
            "job file", str(path), f"a YAML file of at most {MAX_JOB_BYTES // 1024} KiB", problem=f"{size} bytes"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            str(path),
            f"byte {error.object[error.start : error.start + 1]!r} at offset {error.start}",
            "UTF-8 text",
            problem="not UTF-8",
        ) from None
    loader = _UniqueKeyLoader(text)
    loader.source = str(path)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as error:
        raise SpecError(str(path), "invalid YAML", f"valid YAML ({error})") from None
    finally:
        loader.dispose()
    _check_size(data, str(path))
    return data if data is not None else {}


def require_teacher(job: JobSpec, module_given: bool = False) -> None:
    """A job that distils needs a teacher: named in the job, or a module given to Controller.start."""
    if job.compression.distills and job.compression.teacher is None and not module_given:
        raise SpecError(
            "compression.teacher",
            None,
            "a teacher ({model: resnet18}) when any distill_alpha > 0, or a trained module: Controller.start(job, run_dir, teacher=MODULE)",
        )


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job file."""
    return spec_from_dict(_read_yaml(Path(path)), str(path))
