"""The private APIs of dependencies that cosearch needs, in one place.

Each has no public equivalent in the versions we support; `tests/test_private_apis.py` calls every
one, so a dependency that renames or changes one fails that test by name instead of a search midway.
Nothing else in cosearch reaches into a dependency's private names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def optuna_trial(study: Any, number: int) -> Any:
    """The live `optuna.trial.Trial` of `study`'s trial `number` (to set constraints before `tell`).

    Optuna hands out Trial objects only from `ask()`; a resumed run must rebuild the ones it asked
    before it was stopped. Public `study.tell(number, ...)` takes a number but no constraints.
    """
    import optuna

    trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    return optuna.trial.Trial(study, trial_id)


def optuna_generation_key(sampler: Any) -> str | None:
    """The trial system attribute where Optuna's genetic samplers (NSGA-II, NSGA-III) keep a trial's
    generation; None for other samplers."""
    key = getattr(sampler, "_get_generation_key", None)
    return key() if key is not None else None


def optuna_parents(study: Any) -> dict[int, list[int]]:
    """A genetic sampler's cached parent population of each generation, by trial number (it caches
    them as study system attributes, by trial id); {} for other samplers."""
    prefix = getattr(study.sampler, "_get_parent_cache_key_prefix", None)
    if prefix is None:
        return {}
    attrs = study._storage.get_study_system_attrs(study._study_id)
    number = {t._trial_id: t.number for t in study.get_trials(deepcopy=False)}
    return {
        int(key[len(prefix()) :]): [number[i] for i in ids if i in number]
        for key, ids in attrs.items()
        if key.startswith(prefix()) and key[len(prefix()) :].isdigit()
    }


def optuna_set_parents(study: Any, parents: dict[int, list[int]]) -> None:
    """Cache parent populations (generation -> trial numbers) as `study`'s genetic sampler would, and
    make the sampler forget what it counted of another study (its generations, by trial number)."""
    prefix = getattr(study.sampler, "_get_parent_cache_key_prefix", None)
    if hasattr(study.sampler, "_cached_study_id"):
        study.sampler._cached_study_id = None
    if prefix is None:
        return
    trials = study.get_trials(deepcopy=False)
    for generation, numbers in parents.items():
        study._storage.set_study_system_attr(
            study._study_id, prefix() + str(generation), [trials[n]._trial_id for n in numbers]
        )


def learnable_fake_quantize(
    x: Any, scale: Any, zero_point: Any, quant_min: int, quant_max: int, grad_factor: float
) -> Any:
    """LSQ fake quantization with a learnt step size (torch's own kernel; its public wrapper is a module)."""
    import torch

    return torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero_point, quant_min, quant_max, grad_factor)


def timm_block_decoder() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """timm's `decode_arch_def` and `round_channels`, which build an EfficientNet from block strings."""
    from timm.models._efficientnet_builder import decode_arch_def, round_channels

    return decode_arch_def, round_channels
