"""The distillation teacher: a timm model, loaded from a local checkpoint or trained once per run.

Its logits on the training split (every shifted view of it when `training.shift_px` is set) are
computed once and shipped to every evaluation, so no candidate runs the teacher again.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np

from cosearch.evaluators.data import shifted_views, views_digest
from cosearch.evaluators.train import (
    DataSettings,
    TrainingSettings,
    accuracy,
    predict,
    train_epochs,
    training_device,
)


def prepare_teacher(
    model_name: str, checkpoint: str | None, epochs: int, data: DataSettings, training: TrainingSettings
) -> dict[str, Any]:
    """Train (or load) the teacher; returns its training-split logits, validation accuracy and state."""
    import timm
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(training.seed)
    dataset = data.load()
    model = timm.create_model(
        model_name, pretrained=False, num_classes=dataset.num_classes, in_chans=dataset.input_shape[0]
    )
    start = time.perf_counter()
    if checkpoint:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        how = f"loaded from {checkpoint}"
    else:
        train = shifted_views(dataset.train, training.shift_px)
        train_epochs(model, train, epochs, training.learning_rate, training, training.seed, device=training_device())
        how = f"trained {epochs} epochs on the training split" + (
            f" (shifts up to {training.shift_px} px)" if training.shift_px else ""
        )
    return {
        "model": model_name,
        "how": how,
        **teacher_outputs(model, dataset, training),
        "seconds": time.perf_counter() - start,
    }


def teacher_outputs(model: Any, dataset: Any, training: TrainingSettings) -> dict[str, Any]:
    """What a run keeps of a trained teacher: logits on every training view, validation accuracy, state."""
    import torch

    val_logits = predict(model, dataset.val.x)
    classes = val_logits.shape[-1]
    if classes != dataset.num_classes:
        from cosearch.core.errors import SpecError

        raise SpecError(
            "teacher",
            classes,
            f"a teacher with the task's {dataset.num_classes} classes",
            problem=f"the teacher module has {classes} output classes",
        )
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    views = shifted_views(dataset.train, training.shift_px)
    return {
        "val_accuracy": accuracy(val_logits, dataset.val.y),
        "train_views": views_digest(views),
        "train_logits": np.asarray(predict(model, views.x), dtype=np.float32),
        "state": buffer.getvalue(),
    }
