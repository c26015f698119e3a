"""`cosearch export --finetune EPOCHS`: the pick trained further, under its compression, on the
training and validation images together before it is written (the test split stays held out).

The loaded weights go back under the policy's weight transforms (masks, grids, shared buckets;
this changes no output, which is checked), so training keeps the pick as compressed as the
search measured it. With a distilling policy the run's teacher is rebuilt from its stored
state and gives soft labels for both splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cosearch import build
from cosearch.core.errors import CosearchError
from cosearch.evaluators.data import Split, shifted_views
from cosearch.evaluators.train import accuracy, predict, train_epochs, training_device

UNCHANGED_ATOL = 1e-5  # re-applying the weight transforms to baked weights must not move outputs


def finetune(model: Any, stored: Any, job: Any, data: Any, store: Any, epochs: int) -> tuple[Any, dict[str, Any]]:
    """The fine-tuned, baked model and what the card says about it."""
    import torch

    from cosearch.compressors import bake, recompress

    if epochs < 1:
        raise CosearchError(f"--finetune {epochs}: a number of epochs >= 1")
    candidate = stored.result.candidate
    training = build.training_settings(job)
    trainable = recompress(model, candidate.policy)
    trainable.eval()
    moved = float(np.abs(predict(trainable, data.val.x) - predict(model, data.val.x)).max())
    if moved > UNCHANGED_ATOL:
        raise CosearchError(
            f"result {stored.id}: its weights do not go back under their compression unchanged (max |diff| {moved:.1e}); "
            "export it without --finetune"
        )
    both = shifted_views(
        Split(np.concatenate([data.train.x, data.val.x]), np.concatenate([data.train.y, data.val.y])), training.shift_px
    )
    distillation = _distillation(candidate, job, data, store, both)
    test_before = accuracy(predict(model, data.test.x), data.test.y)
    seed = (int(candidate.key[:8], 16) + training.seed + 7) % (2**31)
    torch.manual_seed(seed)
    lr = training.finetune_learning_rate
    train_epochs(trainable, both, epochs, lr, training, seed, distillation, training_device(), trained=True)
    tuned = bake(trainable)
    tuned.eval()
    record = {
        "epochs": epochs,
        "learning_rate": lr,
        "images": len(both.y),
        "data": "training and validation splits together"
        + (f", every shift up to {training.shift_px} px" if training.shift_px else ""),
        "distilled": distillation is not None,
        "test_accuracy_before": test_before,
        "note": "the validation split was trained on: the test split is the held-out figure",
    }
    return tuned, record


def _distillation(candidate: Any, job: Any, data: Any, store: Any, split: Split) -> Any:
    """The pick's distillation loss with teacher logits for `split`, or None when it does not distil."""
    from cosearch.compressors import teacher_technique

    found = teacher_technique(candidate.policy)
    if found is None:
        return None
    technique, value = found
    return technique.training_loss(value, _teacher_logits(job, data, store, split), job.compression.temperature)


def _teacher_logits(job: Any, data: Any, store: Any, split: Split) -> np.ndarray:
    import io

    import timm
    import torch

    kept = store.teacher()
    info, state = (kept[0], store.weights("teacher:state")) if kept else (None, None)
    if info is None or state is None:
        raise CosearchError(
            f"{store.run_dir} keeps no teacher; --finetune of a distilling pick needs the run's teacher"
        )
    name = str(info.get("model", ""))
    if name.endswith("(module)"):
        raise CosearchError(
            f"the run's teacher was a module given to Controller.start ({name}); --finetune of a distilling pick "
            "rebuilds the teacher from a timm name, which this run has not"
        )
    teacher = timm.create_model(name, pretrained=False, num_classes=data.num_classes, in_chans=data.input_shape[0])
    teacher.load_state_dict(torch.load(io.BytesIO(state), weights_only=True))
    teacher.eval()
    return np.asarray(predict(teacher, split.x), dtype=np.float32)
