"""The job file: YAML parsed into a validated, typed JobSpec.

Every mistake becomes one SpecError that names the field, the value and what is allowed;
nothing is written before a job validates.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from cosearch.compressors import Calibration, compressors
from cosearch.compressors import genes as compression_genes
from cosearch.core.errors import SpecError
from cosearch.core.objectives import Constraint, Goals, Objective
from cosearch.core.schema import Section


class _Section(
    Section, BaseModel
):  # BaseModel named again so linters see a pydantic model (mutable defaults are copied)
    pass


class _Component(BaseModel):
    """A registered component: `name` plus the keyword arguments it takes (checked against it)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class TaskSpec(_Section):
    dataset: str = "digits"
    path: str | None = None  # checked when a run starts or resumes (cosearch.build), not when it is read
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    image_size: int | None = Field(None, ge=4, le=512)  # resize images to this square (bilinear); None: as stored

    @property
    def input_shape(self) -> tuple[int, int, int]:
        from cosearch.evaluators.data import input_shape

        return input_shape(self.dataset, self.image_size, self.path)

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        from cosearch.evaluators.data import DATASETS  # late: the evaluators build on these sections

        if value not in DATASETS:
            raise ValueError(f"allowed: one of {list(DATASETS)}")
        return value

    @field_validator("val_fraction", "test_fraction")
    @classmethod
    def _fraction(cls, value: float) -> float:
        if not 0.05 <= value <= 0.5:
            raise ValueError("allowed: a fraction between 0.05 and 0.5")
        return value


class TeacherSpec(_Section):
    """The distillation teacher: a timm model, from a local checkpoint or trained once per run.

    The model name and the checkpoint are checked when a run starts or resumes (cosearch.build).
    """

    model: str = "resnet18"
    checkpoint: str | None = None
    epochs: int = Field(10, ge=1)


class CompressionMethod(_Section):
    """How a policy is carried out (the part of the `compression` section the evaluator receives)."""

    channel_importance: Literal["l1", "l2", "taylor"] = "l1"  # which channels structured pruning removes
    calibration: Calibration = "minmax"  # how activation ranges are chosen
    learn_activation_scales: bool = False  # LSQ: step sizes trained during fine-tuning


class _CompressionOptions(CompressionMethod):
    """How the searched techniques are carried out; the option list of every technique's gene is
    added from the registry (`cosearch.compressors`): `GENE: [options]` for each technique."""

    temperature: float = Field(2.0, gt=0, allow_inf_nan=False)  # measured against 4: README, Distillation
    teacher: TeacherSpec | None = None

    @model_validator(mode="after")
    def _genes(self) -> _CompressionOptions:
        for name, gene in compression_genes().items():
            values = getattr(self, name)
            if not values or len(set(values)) != len(values):
                raise SpecError(f"compression.{name}", values, "a non-empty list of distinct values")
            for i, value in enumerate(values):
                if not gene.check(value):
                    raise SpecError(f"compression.{name}[{i}]", value, gene.allowed)
        return self

    @property
    def distills(self) -> bool:
        """True when some technique that needs a teacher is searched with a value other than off."""
        techniques = compressors()
        return any(
            value != c.gene.default
            for name, c in techniques.items()
            if c.needs_teacher
            for value in getattr(self, name)
        )

    def searches_nothing(self) -> bool:
        """True when every technique is searched only at "off"."""
        return all(getattr(self, name) == [gene.default] for name, gene in compression_genes().items())


CompressionSpec = create_model(
    "CompressionSpec",
    __base__=_CompressionOptions,
    **{name: (list[gene.kind], list(gene.search)) for name, gene in compression_genes().items()},
)


MAX_SHIFT_PX = 4  # (2 * 4 + 1)^2 = 81 views of each image already


class TrainingSpec(_Section):
    epochs: int = Field(8, ge=0)
    finetune_epochs: int = Field(2, ge=0)
    batch_size: int = Field(64, ge=2)  # BatchNorm needs more than one sample
    learning_rate: float = Field(3e-3, gt=0, allow_inf_nan=False)
    finetune_learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(1e-4, ge=0, allow_inf_nan=False)
    # Also train on the images shifted by up to this many pixels (fixed views, so a teacher labels each once).
    shift_px: int = Field(0, ge=0, le=MAX_SHIFT_PX)


class LatencySpec(_Section):
    threads: int = Field(1, ge=1)
    batch_size: int = Field(1, ge=1)
    warmup_runs: int = Field(50, ge=0)  # fewer left the first measurements of a file ~40 % slow here
    runs: int = Field(100, ge=30)  # fewer and the median moves by more than the differences searched for


DeviceSpec = SerializeAsAny[Section]  # one device: the entry model of its kind (a union discriminated by `kind`)


def device_entry(data: Any, field: str) -> Section:
    """One device of the job (or of a profiles file) as the entry model its `kind` registers
    (measured when not given): `field` names it in errors. Runs stored before kinds had their own
    entries hold every kind's fields at their defaults; those are dropped."""
    from cosearch.hardware.profiles import DEVICE_KINDS

    data = {} if data is None else data
    if isinstance(data, Section):  # already an entry (a JobSpec validated again)
        return data
    if not isinstance(data, dict):
        raise SpecError(field, data, "a mapping: kind and that kind's fields")
    kind_name = data.get("kind", "measured")
    if not isinstance(kind_name, str) or kind_name not in DEVICE_KINDS:
        raise SpecError(f"{field}.kind", kind_name, f"one of {DEVICE_KINDS.names()}")
    kind = DEVICE_KINDS.get(kind_name)
    fields, legacy = kind.fields(), _legacy_device_defaults()
    entry = {"kind": kind_name}
    for key, value in data.items():
        if key == "kind" or (key not in fields and key in legacy and value == legacy[key]):
            continue
        if key not in fields:
            problem = "not used by this kind" if key in legacy else "unknown key"
            raise SpecError(f"{field}.{key}", value, f"fields of a {kind_name} device: {sorted(fields)}", problem)
        entry[key] = value
    try:
        return kind.entry.model_validate(entry)
    except ValidationError as error:
        raise _spec_error(error, field, kind.entry) from None


def _legacy_device_defaults() -> dict[str, Any]:
    """Every kind's fields with their defaults (None where required): what a stored entry held."""
    from cosearch.hardware.profiles import DEVICE_KINDS

    out: dict[str, Any] = {}
    for name in DEVICE_KINDS.in_order():
        for key, info in DEVICE_KINDS.get(name).entry.model_fields.items():
            if key != "kind":
                out.setdefault(key, None if info.is_required() else info.default)
    return out


def check_device(name: str, field: str, spec: Section) -> None:
    """What can be checked of one device without reading its table, beyond its entry model."""
    from cosearch.hardware.profiles import DEVICE_KINDS

    if not name or not all(ch.isalnum() or ch in "-_." for ch in name):
        raise SpecError(field, name, "a device name of letters, digits, '-', '_' and '.'")
    DEVICE_KINDS.get(spec.kind).check(field, spec)


class ResourcesSpec(_Section):
    trials: int = Field(24, ge=1)
    concurrency: int = Field(2, ge=1)
    # GPUs per evaluation (and for the teacher's training), as Ray's num_gpus: 0.5 lets two
    # trainings share one GPU. Latency is still measured by ONNX Runtime on the job's devices.
    gpus_per_trial: float = Field(0.0, ge=0)
    address: str | None = None
    seed: int = 0


class FinalizeSpec(_Section):
    """After a weight-sharing search: its best `top_k` results by Pareto rank (the front, then the
    next, each by the first objective) trained as standalone networks, fine-tuned from their inherited weights (`from: inherited`) or from scratch, for
    `final_epochs`; the Pareto set a user picks from is then built from these."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    top_k: int = Field(8, ge=1)
    final_epochs: int = Field(8, ge=1)
    start: Literal["inherited", "scratch"] = Field("inherited", alias="from")


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
    finalize: FinalizeSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value or not all(ch.isalnum() or ch in "-_." for ch in value):
            raise ValueError("allowed: letters, digits, '-', '_' and '.'")
        return value

    @model_validator(mode="before")
    @classmethod
    def _device_entries(cls, data: Any) -> Any:
        """Each device as its kind's entry model, dispatched by `kind` through the registry."""
        if isinstance(data, dict) and isinstance(data.get("devices"), dict):
            devices = {name: device_entry(spec, f"devices.{name}") for name, spec in data["devices"].items()}
            data = {**data, "devices": devices}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        """Checks across fields that read nothing: files and components are checked by cosearch.build."""
        self.goals()
        for name, spec in self.devices.items():
            check_device(name, f"devices.{name}", spec)
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

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


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
        raise _spec_error(error) from None


def _spec_error(error: ValidationError, prefix: str = "", root: Any = None) -> SpecError:
    """The first error of a validation as a SpecError; `root`: the model validated (JobSpec unless
    given), `prefix`: where it sits in the job."""
    root = JobSpec if root is None else root
    first = error.errors()[0]
    loc = tuple(first["loc"])
    field = ".".join(part for part in (prefix, _location(loc) if loc else "") if part) or "job"
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, SpecError):
        return cause
    if first["type"] == "extra_forbidden":
        return SpecError(field, first["input"], f"one of {_section_fields(loc[:-1], root)}", problem="unknown key")
    if first["type"] == "missing":
        return SpecError(field, None, "a value", problem="missing")
    return SpecError(field, first.get("input"), _allowed(first, _field(loc, root)))


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}


def _allowed(error: dict[str, Any], field: Any) -> str:
    """A pydantic error's rule in the words of every other message: "an integer from 0 to 4", "one of [...]"."""
    kind, ctx, value = error["type"], error.get("ctx", {}), error.get("input")
    if kind in _BOUNDS:
        number = "an integer" if isinstance(value, int) else "a number"
        bounds = {
            name: getattr(rule, name)
            for rule in getattr(field, "metadata", ())
            for name in ("ge", "le")
            if getattr(rule, name, None) is not None
        }
        if len(bounds) == 2:  # both ends inclusive: say the range, as the kernels' own checks do
            return f"{number} from {bounds['ge']} to {bounds['le']}"
        return f"{number} {_BOUNDS[kind]} {next(iter(ctx.values()))}"
    if kind == "finite_number":
        return "a finite number"
    if kind == "literal_error":
        return f"one of [{ctx['expected'].replace(' or ', ', ')}]"
    message = str(error["msg"]).removeprefix("Value error, ").removeprefix("allowed: ")
    return _TYPE_WORDS.get(kind.split("_")[0], message)


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "string": "a string",
    "list": "a list",
    "bool": "true or false",
    "dict": "a mapping",
    "model": "a mapping",
}


def _field(loc: tuple[Any, ...], root: Any = None) -> Any:
    """The pydantic FieldInfo at `loc` (through lists, Optional and the names of a dict), or None."""
    model: Any = JobSpec if root is None else root
    field = None
    for part in loc:
        fields = getattr(model, "model_fields", None)
        if fields is not None and part in fields:
            field = fields[part]
            model = field.annotation
        elif typing.get_origin(model) in (dict, list):
            model = typing.get_args(model)[-1]  # a dict's value type, a list's item type
        else:
            return None
        while typing.get_origin(model) in (typing.Union, types.UnionType):
            model = next(a for a in typing.get_args(model) if a is not type(None))
    return field


def _section_fields(loc: tuple[Any, ...], root: Any = None) -> list[str]:
    """The keys the section at `loc` takes."""
    root = JobSpec if root is None else root
    model: Any = root if not loc else getattr(_field(loc, root), "annotation", None)
    while typing.get_origin(model) in (dict, list, typing.Union, types.UnionType):
        model = next(a for a in typing.get_args(model)[::-1] if a is not type(None))
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


def teacher_rules() -> list[str]:
    """The techniques that learn from a teacher (distillation), each as "NAME > OFF"."""
    return [f"{name} > {c.gene.default:g}" for name, c in compressors().items() if c.needs_teacher]


def require_teacher(job: JobSpec, module_given: bool = False) -> None:
    """A job that distils needs a teacher: named in the job, or a module given to Controller.start."""
    from cosearch.search_spaces import SEARCH_SPACES

    teaches_itself = SEARCH_SPACES.get(job.search_space.name).teaches_itself()
    if job.compression.distills and job.compression.teacher is None and not module_given and not teaches_itself:
        raise SpecError(
            "compression.teacher",
            None,
            f"a teacher ({{model: resnet18}}) when any {' or '.join(teacher_rules())}, or a trained module: "
            "Controller.start(job, run_dir, teacher=MODULE)",
        )


def read_job(path: str | Path) -> JobSpec:
    """Read a job file and check it against the schema (nothing else is read: see cosearch.build.load_job)."""
    return spec_from_dict(_read_yaml(Path(path)), str(path))
