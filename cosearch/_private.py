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
