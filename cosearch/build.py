"""Building a run from its job: the search space, strategy, evaluator and devices, and every
check that reads something (the dataset folder, device tables, the profiles file, the teacher).

`cosearch.job` only parses, so a stored job reads back whatever has moved since; `run` and
`resume` come here first (`load_job`, `check`) and say what is wrong before anything is written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cosearch.compressors import genes as compression_genes
from cosearch.core.errors import CosearchError, SpecError
from cosearch.hardware.profiles import DEVICE_KINDS
from cosearch.job import (
    CompressionMethod,
    DeviceSpec,
    JobSpec,
    TeacherSpec,
    _Component,
    _read_yaml,
    check_device,
    device_entry,
    read_job,
)


def load_job(path: str | Path) -> JobSpec:
    """Read a job file and check everything about it: what `cosearch run` does before writing anything."""
    return check(read_job(path))


def check(job: JobSpec, teacher_prepared: bool = False) -> JobSpec:
    """Raise SpecError for the first thing that keeps `job` from running: files, then components.
    `teacher_prepared`: the run already stores its teacher's outputs, so its checkpoint is not read."""
    from cosearch.evaluators.data import check_dataset_path

    check_dataset_path(job.task.dataset, job.task.path, job.task.image_size)
    if not teacher_prepared:
        _check_teacher(job)
    profiles = device_profiles(job)
    make_space(job).check_files(job.task.input_shape, _num_classes(job), job.task.dataset)
    validate_strategy(job)
    validate_evaluator(job, profiles)
    _check_strategy_needs(job)
    return job


def _check_strategy_needs(job: JobSpec) -> None:
    """A strategy whose work trains on the job's data (`Strategy.needs_data`) needs an evaluator that has it."""
    from cosearch.strategies import STRATEGIES

    if getattr(STRATEGIES.get(job.strategy.name), "needs_data", False) and "data" not in evaluator_needs(job):
        raise SpecError(
            "evaluator",
            job.evaluator.name,
            f"an evaluator that trains on the job's data (train or supernet): strategy {job.strategy.name!r} trains on it",
        )


def _check_teacher(job: JobSpec) -> None:
    teacher = job.compression.teacher
    if teacher is None:
        return
    import timm

    if not timm.is_model(teacher.model):
        close = timm.list_models(f"*{teacher.model.split('_')[0][:6]}*")[:5]
        raise SpecError("compression.teacher.model", teacher.model, f"a timm model name, e.g. {close or ['resnet18']}")
    if teacher.checkpoint is not None and not Path(teacher.checkpoint).is_file():
        raise SpecError(
            "compression.teacher.checkpoint", teacher.checkpoint, "a local state-dict file (nothing is downloaded)"
        )
    _check_teacher_checkpoint(job)


def _check_teacher_checkpoint(job: JobSpec) -> None:
    """A teacher checkpoint must fit the task: its classes and input channels."""
    teacher = job.compression.teacher
    if teacher is None or teacher.checkpoint is None:
        return
    import timm

    from cosearch.search_spaces.timm_model import check_checkpoint

    classes, channels = _num_classes(job), job.task.input_shape[0]
    model = timm.create_model(teacher.model, pretrained=False, num_classes=classes, in_chans=channels)
    check_checkpoint(
        "compression.teacher.checkpoint", teacher.checkpoint, model, teacher.model, job.task.dataset, "teacher"
    )


def _num_classes(job: JobSpec) -> int:
    from cosearch.evaluators.data import num_classes

    return num_classes(job.task.dataset, job.task.path)


def teacher_spec(job: JobSpec) -> TeacherSpec | None:
    """The teacher a distilling job learns from: the one it names, else its space's own network
    (a space that teaches itself, such as a given timm model), else none."""
    from cosearch.search_spaces import SEARCH_SPACES

    if job.compression.teacher is not None or not SEARCH_SPACES.get(job.search_space.name).teaches_itself():
        return job.compression.teacher
    default = make_space(job).default_teacher()
    return TeacherSpec(**default) if default else None


def device_profiles(job: JobSpec) -> dict[str, Any]:
    """Every device this job knows: built in (`local-cpu`), from `profiles`, and declared here."""
    from cosearch.hardware.profiles import builtin_devices

    specs: dict[str, tuple[str, DeviceSpec, Path | None]] = {}
    if job.profiles is not None:
        for name, spec in _read_profiles(job.profiles).items():
            specs[name] = (f"profiles ({job.profiles}): devices.{name}", spec, Path(job.profiles).parent)
    for name, spec in job.devices.items():
        if name in specs:
            raise SpecError(
                f"devices.{name}", name, f"a name not already declared in {job.profiles}", problem="declared twice"
            )
        specs[name] = (f"devices.{name}", spec, None)
    profiles = builtin_devices(_latency_settings(job))
    profiles.update({name: _device(job, name, *entry) for name, entry in specs.items()})
    return profiles


def _latency_settings(job: JobSpec):
    from cosearch.hardware import LatencySettings

    return LatencySettings(**job.latency.model_dump())


def _device(job: JobSpec, name: str, field: str, spec: DeviceSpec, base: Path | None) -> Any:
    from cosearch.hardware.profiles import DEVICE_KINDS, DeviceContext

    check_device(name, field, spec)
    context = DeviceContext(job.latency.model_dump(), job.task.input_shape, base)
    return DEVICE_KINDS.get(spec.kind).from_spec(name, field, spec, context)


def evaluated_devices(job: JobSpec, profiles: dict[str, Any] | None = None) -> list[Any]:
    """The devices each candidate is costed on: every declared one, and `local-cpu` when named."""
    from cosearch.core.objectives import DEFAULT_DEVICE

    profiles = profiles if profiles is not None else device_profiles(job)
    named = {m.partition("@")[2] for m in job.goals().metrics}
    return [p for name, p in profiles.items() if name != DEFAULT_DEVICE or name in named or name in job.devices]


def make_space(job: JobSpec) -> Any:
    from cosearch.search_spaces import SEARCH_SPACES

    SEARCH_SPACES.get(job.search_space.name)
    SEARCH_SPACES.check_params(job.search_space.name, job.search_space.params, "search_space")
    return _construct(SEARCH_SPACES, job.search_space, "search_space")


def make_joint_space(job: JobSpec) -> Any:
    from cosearch.search_spaces import JointSpace

    options = {name: getattr(job.compression, name) for name in compression_genes()}
    return JointSpace(make_space(job), **options)


def validate_strategy(job: JobSpec) -> None:
    from cosearch.strategies import CONTROLLER_ARGS, STRATEGIES

    STRATEGIES.get(job.strategy.name)
    STRATEGIES.check_params(job.strategy.name, job.strategy.params, "strategy", skip=CONTROLLER_ARGS)
    make_strategy(job)


def make_strategy(job: JobSpec) -> Any:
    from cosearch.strategies import STRATEGIES

    kwargs = {"space": make_joint_space(job), "goals": job.goals(), "seed": job.resources.seed}
    return _construct(STRATEGIES, job.strategy, "strategy", **kwargs)


def validate_evaluator(job: JobSpec, profiles: dict[str, Any] | None = None) -> None:
    from cosearch.evaluators import EVALUATORS

    needs = evaluator_needs(job)
    EVALUATORS.check_params(job.evaluator.name, job.evaluator.params, "evaluator", skip=("space", *needs))
    EVALUATORS.get(job.evaluator.name).check_job(job)
    if job.finalize is not None and not EVALUATORS.get(job.evaluator.name).finalizes:
        having = [name for name in EVALUATORS.names() if EVALUATORS.get(name).finalizes]
        raise SpecError(
            "finalize",
            job.finalize.model_dump(by_alias=True),
            f"no finalize section, or an evaluator that trains a search's picks at the end: {having}",
            problem=f"the {job.evaluator.name!r} evaluator has no final training",
        )
    profiles = profiles if profiles is not None else device_profiles(job)
    evaluator = make_evaluator(job, profiles=profiles)
    provided = evaluator.provides()
    named = [(f"objectives[{i}]", o.metric) for i, o in enumerate(job.goals().objectives)]
    named += [(f"budgets[{i}]", c.metric) for i, c in enumerate(job.goals().constraints)]
    devices = profiles if "devices" in needs else {}  # only an evaluator that takes devices costs them
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
            kinds = [kind for kind in DEVICE_KINDS.names() if base in DEVICE_KINDS.get(kind).offers]
            offers = [m.partition("@")[0] for m in devices[device].metrics()]
            raise SpecError(
                field,
                metric,
                f"{devices[device].kind} devices provide {offers}; {base} comes from {kinds or 'no'} devices",
                problem=f"device {device!r} does not provide {base}",
            )
        raise SpecError(field, metric, f"a metric the {job.evaluator.name!r} evaluator provides: {sorted(provided)}")
    if not evaluator.evaluates_policy and not job.compression.searches_nothing():
        off = ", ".join(f"{name}: [{gene.default}]" for name, gene in compression_genes().items())
        raise SpecError(
            "compression",
            job.compression.model_dump(),
            f"{off}, since the {job.evaluator.name!r} evaluator ignores compression",
        )


def data_settings(job: JobSpec) -> Any:
    from cosearch.evaluators.train import DataSettings

    t = job.task
    return DataSettings(**t.model_dump(), seed=job.resources.seed)


def training_settings(job: JobSpec) -> Any:
    from cosearch.evaluators.train import TrainingSettings

    return TrainingSettings(**job.training.model_dump(), seed=job.resources.seed)


def compression_settings(job: JobSpec) -> Any:
    from cosearch.evaluators.train import CompressionSettings

    c = job.compression
    return CompressionSettings(**{key: getattr(c, key) for key in CompressionMethod.model_fields})


def make_evaluator(job: JobSpec, profiles: dict[str, Any] | None = None, **prepared: Any) -> Any:
    """The job's evaluator; `prepared`: what the run made for it before evaluating (the
    `teacher_logits`, the trained `supernet`), absent while a job is only checked."""
    from cosearch.evaluators import EVALUATORS

    params: dict[str, Any] = {"space": make_space(job)}
    if "seed" in EVALUATORS.parameters(job.evaluator.name) and "seed" not in job.evaluator.params:
        params["seed"] = job.resources.seed
    params.update({need: _RUN_INPUTS[need](job, prepared, profiles) for need in evaluator_needs(job)})
    return _construct(EVALUATORS, job.evaluator, "evaluator", **params)


# What a run can hand an evaluator's constructor besides its space, by the keyword it arrives as:
# (job, what the run prepared, device profiles) -> the value.
_RUN_INPUTS: dict[str, Any] = {
    "data": lambda job, prepared, profiles: data_settings(job),
    "training": lambda job, prepared, profiles: training_settings(job),
    "devices": lambda job, prepared, profiles: tuple(evaluated_devices(job, profiles)),
    "budgets": lambda job, prepared, profiles: job.goals().constraints,
    "teacher_logits": lambda job, prepared, profiles: prepared.get("teacher_logits"),
    "temperature": lambda job, prepared, profiles: job.compression.temperature,
    "compression": lambda job, prepared, profiles: compression_settings(job),
    "supernet": lambda job, prepared, profiles: prepared.get("supernet"),
}
RUN_INPUTS = tuple(_RUN_INPUTS)


def evaluator_needs(job: JobSpec) -> frozenset[str]:
    """The run inputs the job's evaluator declares (`Evaluator.needs`)."""
    from cosearch.evaluators import EVALUATORS

    needs = EVALUATORS.get(job.evaluator.name).needs
    unknown = sorted(set(needs) - set(RUN_INPUTS))
    if unknown:
        raise CosearchError(f"evaluator {job.evaluator.name!r} needs {unknown}; a run provides {list(RUN_INPUTS)}")
    return needs


def _read_profiles(path: str) -> dict[str, DeviceSpec]:
    """The `devices` mapping of a profiles file."""
    if not Path(path).is_file():
        raise SpecError("profiles", path, "an existing YAML file with a `devices:` mapping")
    data = _read_yaml(Path(path))
    if not isinstance(data, dict) or set(data) != {"devices"} or not isinstance(data["devices"], dict):
        raise SpecError("profiles", path, "a YAML file holding one mapping, `devices: {NAME: {kind: ...}}`")
    return {
        str(name): device_entry(spec, f"profiles ({path}): devices.{name}") for name, spec in data["devices"].items()
    }


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
