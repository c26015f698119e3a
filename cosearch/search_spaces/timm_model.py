"""Your own network, searched for its compression only: any timm model, or a module from your code.

`search_space: {name: timm, model: resnet18, checkpoint: PATH}` builds timm's model (for the
task's classes and input channels) and starts every candidate from the checkpoint's weights when
one is given (a state dict of that model; nothing is downloaded), else from scratch. The
architecture is fixed: the genome is the compression policy, one slot per conv / linear layer
(timm's own module names, `layer1.0.conv1`), so every technique of the job's `compression` section is
searched over the real network (channel pruning across its dependency graph, by Torch-Pruning). A job
that distils and names no teacher distils from the model itself, uncompressed (from the
checkpoint, or trained once by the run).

`search_space: {name: module, factory: "package.module:function"}` does the same for a network
defined in your code: `function` returns an `nn.Module`, and is passed `num_classes` (where
its signature names it or takes `**kwargs`) and `in_chans` or `in_channels` (where it names them).

Files and code are read when a run starts or resumes (`check_files`), not when a stored run is
read, so `status`, `pareto` and `report` of a finished run need neither.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from cosearch.core.errors import SpecError
from cosearch.search_spaces.base import SEARCH_SPACES, Choice, Form, Sample, SearchSpace

PROBE_CLASSES = 10  # slot names do not depend on the class count or the input channels


class FixedNetworkSpace(SearchSpace):
    """A space of one network: its arch names it, and its slots are its conv / linear layers."""

    field = "search_space"

    def name(self) -> str:
        raise NotImplementedError

    def make(self, input_shape: Sequence[int], num_classes: int) -> Any:
        """The network, untrained."""
        raise NotImplementedError

    def choices(self) -> list[Choice]:
        return [Choice("model", (self.name(),))]

    def arch_from_sample(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        return {"model": sample["model"]}

    def sample_from_arch(self, arch: Mapping[str, Any]) -> Sample:
        return {"model": arch["model"]}

    def validate_arch(self, arch: Mapping[str, Any]) -> None:
        if dict(arch) != {"model": self.name()}:
            raise SpecError("arch", dict(arch), f"{{'model': {self.name()!r}}}: this space is one network")

    def all_slots(self) -> list[str]:
        return list(_slots(self))

    def layer_slots(self, arch: Mapping[str, Any]) -> list[str]:
        return self.all_slots()

    def forms(self, arch: Mapping[str, Any]) -> list[Form]:
        return [Form(dict(arch), {slot: slot for slot in self.all_slots()})]

    def build(self, arch: Mapping[str, Any], input_shape: Sequence[int], num_classes: int) -> Any:
        return self.make(input_shape, num_classes)

    def describe(self, arch: Mapping[str, Any]) -> str:
        return self.name()


def _slots(space: FixedNetworkSpace) -> tuple[str, ...]:
    return _probe_slots(type(space), space.name())


@cache  # per network, not per instance: every worker builds the space again
def _probe_slots(kind: type, name: str) -> tuple[str, ...]:
    from cosearch.compressors import compression_slots

    return tuple(compression_slots(kind(name).make((3, 32, 32), PROBE_CLASSES)))  # a space's one argument is its name


@SEARCH_SPACES.register("timm")
class TimmModelSpace(FixedNetworkSpace):
    def __init__(self, model: str = "resnet18", checkpoint: str | None = None) -> None:
        import timm

        if not timm.is_model(model):
            close = difflib.get_close_matches(model, timm.list_models(), n=5, cutoff=0.6)
            raise SpecError("search_space.model", model, f"a timm model name, e.g. {close or ['resnet18']}")
        self.model, self.checkpoint = model, checkpoint

    def name(self) -> str:
        return self.model

    def make(self, input_shape: Sequence[int], num_classes: int) -> Any:
        import timm

        return timm.create_model(self.model, pretrained=False, num_classes=num_classes, in_chans=input_shape[0])

    def initial_weights(self, model: Any) -> Any:
        if self.checkpoint is not None:
            import torch

            model.load_state_dict(torch.load(self.checkpoint, map_location="cpu", weights_only=True))
        return model

    def check_files(self, input_shape: Sequence[int], num_classes: int, dataset: str) -> None:
        if self.checkpoint is None:
            return
        field = "search_space.checkpoint"
        if not Path(self.checkpoint).is_file():
            raise SpecError(field, self.checkpoint, "a local state-dict file (nothing is downloaded)")
        check_checkpoint(field, self.checkpoint, self.make(input_shape, num_classes), self.model, dataset, "model")

    def default_teacher(self) -> dict[str, Any]:
        return {"model": self.model, "checkpoint": self.checkpoint}


@SEARCH_SPACES.register("module")
class ModuleSpace(FixedNetworkSpace):
    def __init__(self, factory: str = "") -> None:
        module, _, function = factory.partition(":")
        if not module or not function.isidentifier():
            raise SpecError("search_space.factory", factory, "'package.module:function' returning an nn.Module")
        self.factory = factory

    def name(self) -> str:
        return self.factory

    def _function(self) -> Callable[..., Any]:
        module, _, function = self.factory.partition(":")
        try:
            found = getattr(importlib.import_module(module), function)
        except (ImportError, AttributeError) as error:
            raise SpecError(
                "search_space.factory",
                self.factory,
                f"an importable 'module:function' ({type(error).__name__}: {error})",
            ) from None
        if not callable(found):
            raise SpecError("search_space.factory", self.factory, "a function (or class) returning an nn.Module")
        return found

    def make(self, input_shape: Sequence[int], num_classes: int) -> Any:
        from torch import nn

        function = self._function()
        try:
            accepted = inspect.signature(function).parameters
        except (TypeError, ValueError):
            accepted = {}
        given = {"num_classes": num_classes, "in_chans": input_shape[0], "in_channels": input_shape[0]}
        passed = {k: v for k, v in given.items() if k in accepted}
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
            passed.setdefault("num_classes", num_classes)  # torchvision's builders take it through **kwargs
        model = function(**passed)
        if not isinstance(model, nn.Module):
            raise SpecError(
                "search_space.factory",
                self.factory,
                f"a function returning an nn.Module (it returned {type(model).__name__})",
            )
        return model

    def check_files(self, input_shape: Sequence[int], num_classes: int, dataset: str) -> None:
        import torch

        model = self.make(input_shape, num_classes)
        try:
            with torch.no_grad():
                out = model.eval()(torch.zeros(1, *input_shape))
        except Exception as error:  # noqa: BLE001 - whatever the user's forward raises, said once
            raise SpecError(
                "search_space.factory",
                self.factory,
                f"a network that takes {list(input_shape)} images ({type(error).__name__}: {error})",
            ) from None
        if tuple(out.shape) != (1, num_classes):
            raise SpecError(
                "search_space.factory",
                self.factory,
                f"a network with {num_classes} outputs per image (the task's classes), not {list(out.shape[1:])}",
            )


def check_checkpoint(field: str, path: str, model: Any, name: str, dataset: str, role: str) -> None:
    """Raise SpecError unless `path` is a state dict that loads into `model` (timm's `name`)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise SpecError(field, path, f"a state dict saved with torch.save ({type(error).__name__})") from None
    expected = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(expected):
        raise SpecError(
            field, path, f"a state dict of timm's {name!r} (its keys differ: a checkpoint of another architecture?)"
        )
    classifier = model.get_classifier()
    head = next(key for key, p in model.named_parameters() if p is getattr(classifier, "weight", None))
    classes = expected[head].shape[0]
    if tuple(state[head].shape) != tuple(expected[head].shape):
        raise SpecError(
            field,
            path,
            f"a {role} with the task's {classes} classes ({head} {list(expected[head].shape)}), not {list(state[head].shape)}",
            problem=f"the {role} has {state[head].shape[0]} output classes",
        )
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        channels = next(p for p in model.parameters() if p.dim() == 4).shape[1]
        raise SpecError(field, path, f"weights shaped for {channels}-channel {dataset} inputs ({bad[0]} differs)")
