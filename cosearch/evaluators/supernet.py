"""Weight sharing: train one supernet per run, then score each candidate on the weights it inherits.

The supernet trains once (single path: each step samples a joint candidate, architecture and
compression, and runs its path with its weights as the elastic techniques compress them; with
`elastic_compression: false` its architecture alone, uncompressed; with `sampling: fair`,
FairNAS's strict fairness: as many paths as a decision has options, every option of every
decision in one of them, on one batch, one update), an epoch at a time so that the run stores a
checkpoint after each. On an elastic space (one with a
largest and a smallest architecture) `sandwich: N` trains, every step, the largest subnet at the
mildest compression on the labels and the smallest at the harshest plus N random ones on the
largest's answers (BigNAS's sandwich rule with in-place distillation). A candidate is then its
standalone network with the inherited weights, BatchNorm statistics recalibrated, compressed
by the same pipeline as the `train` evaluator (so its accuracy is the compressed subnet's),
optionally fine-tuned for a few steps, and costed and exported exactly as `train` does it (without
fine-tuning the costs are taken on the one file it deploys: see `costs_first`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from itertools import islice
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from cosearch.core.candidate import Candidate, Policy
from cosearch.core.errors import EvaluationError, SpecError
from cosearch.core.objectives import DEFAULT_DEVICE, Constraint
from cosearch.evaluators.base import EVALUATORS
from cosearch.evaluators.data import TeacherLogits, shifted_views
from cosearch.evaluators.train import (
    CompressionSettings,
    DataSettings,
    TrainEvaluator,
    TrainingSettings,
    batch_indices,
    describe_device,
    train_epochs,
    training_device,
)
from cosearch.hardware import DeviceProfile, MeasuredDevice


@EVALUATORS.register("supernet")
class SupernetEvaluator(TrainEvaluator):
    """`epochs` of supernet training (once per run), then per candidate: inherit, recalibrate
    BatchNorm on `bn_batches` training batches, compress, fine-tune `finetune_steps`, measure."""

    needs = TrainEvaluator.needs | {"supernet"}
    finalizes = True

    def __init__(
        self,
        space: Any,
        epochs: Annotated[int, Field(ge=1)] = 30,
        bn_batches: Annotated[int, Field(ge=1)] = 8,
        finetune_steps: Annotated[int, Field(ge=0)] = 0,
        sandwich: Annotated[int, Field(ge=0)] = 0,
        sampling: Literal["uniform", "fair"] = "uniform",
        elastic_compression: bool = True,
        prefilter: bool = True,
        supernet: bytes | None = None,
        data: DataSettings = DataSettings(),
        training: TrainingSettings = TrainingSettings(),
        devices: Sequence[DeviceProfile] = (MeasuredDevice(DEFAULT_DEVICE),),
        budgets: tuple[Constraint, ...] = (),
        teacher_logits: TeacherLogits | np.ndarray | None = None,
        temperature: float = 2.0,
        compression: CompressionSettings = CompressionSettings(),
    ) -> None:
        super().__init__(space, data, training, devices, budgets, teacher_logits, temperature, prefilter, compression)
        if not space.has_supernet():
            from cosearch.search_spaces import SEARCH_SPACES

            having = [n for n in SEARCH_SPACES.names() if SEARCH_SPACES.get(n).has_supernet()]
            raise SpecError("search_space.name", space.registry_name, f"a space with a supernet: {having}")
        if sandwich and space.extremes() is None:
            raise SpecError(
                "evaluator.sandwich", sandwich, f"0 for the {space.registry_name} space, which has no largest and "
                "smallest architecture (an elastic space has: mobilenet)"
            )  # fmt: skip
        if sandwich and sampling == "fair":
            raise SpecError(
                "evaluator.sampling", sampling, "uniform with sandwich > 0 (the sandwich rule picks each step's "
                "subnets itself), or sandwich 0"
            )  # fmt: skip
        self.epochs, self.bn_batches, self.finetune_steps = epochs, bn_batches, finetune_steps
        self.sandwich, self.sampling, self.elastic_compression = sandwich, sampling, elastic_compression
        self.supernet_state = supernet
        self._supernet: Any = None  # the loaded module, per worker

    @classmethod
    def check_job(cls, job: Any) -> None:
        """Every compression gene the job searches must be one the supernet can score: elastic
        (it trains with it: per-layer techniques on every supernet, structured pruning where the
        space's supernet has elastic channels), or, with `elastic_compression: false`, any that
        compresses a trained network without a teacher (applied after inheritance, as `train` does)."""
        from cosearch.compressors import compressors
        from cosearch.search_spaces import SEARCH_SPACES

        channels = SEARCH_SPACES.get(job.search_space.name).elastic_channels
        if job.evaluator.params.get("elastic_compression", True):
            allowed = [n for n, c in compressors().items() if c.elastic or (channels and c.removes_channels)]
            says = f"which trains elastic {allowed} only on the {job.search_space.name} space"
            problem = "the supernet cannot vary {} while it trains"
        else:
            allowed = [n for n, c in compressors().items() if not c.needs_teacher]
            says = f"which compresses inherited weights with {allowed} (no fine-tuning teacher)"
            problem = "{} needs a teacher, and inherited weights are not trained on one"
        for name, technique in compressors().items():
            options = getattr(job.compression, name)
            if name not in allowed and any(value != technique.gene.default for value in options):
                raise SpecError(
                    f"compression.{name}",
                    options,
                    f"[{technique.gene.default}] with the supernet evaluator, {says}",
                    problem=problem.format(name),
                )

    @property
    def channel_importance(self) -> str:
        """A supernet with elastic channels keeps each group's most important channels first and
        trains each pruning ratio on them, so pruning keeps those: the pruned subnet is the one it
        trained. Elsewhere the job's importance ranks the inherited weights."""
        return "first" if self.space.elastic_channels else self.compression.channel_importance

    @property
    def costs_first(self) -> bool:
        """Without fine-tuning a subnet is ready in about a tenth of a second, less than a second
        export of it: its costs are taken on the one file it deploys, whose accuracy is measured.
        Fine-tuning steps are worth skipping for a candidate over a budget, so costs come first then."""
        return self.finetune_steps > 0

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_supernet": None}

    # --- the supernet, trained once per run --------------------------------------------
    def new_supernet(self) -> Any:
        import torch

        data = self.data.load()
        torch.manual_seed(self.training.seed)
        return self.space.supernet(data.input_shape, data.num_classes)

    def train_supernet(
        self, joint: Any, checkpoint: bytes | None = None, epochs: int = 1
    ) -> tuple[bytes, dict[str, Any]]:
        """`epochs` more epochs of supernet training (at most up to its `epochs`) from `checkpoint`
        (None: a fresh supernet); the new checkpoint and what it says (epochs done, mean loss per
        epoch, seconds). An epoch's samples and data order depend only on the seed and the epoch,
        and the checkpoint holds the optimizer and schedule, so stopping between epochs and
        continuing from the checkpoint trains the same supernet as never stopping."""
        import torch
        import torch.nn.functional as F

        from cosearch.search_spaces.supernet import path_logits

        torch.set_num_threads(1)
        start = time.perf_counter()
        supernet = self.new_supernet()
        device = training_device()
        supernet.to(device)
        optimizer = torch.optim.Adam(
            supernet.parameters(), lr=self.training.learning_rate, weight_decay=self.training.weight_decay
        )
        train = shifted_views(self.data.load().train, self.training.shift_px)
        steps = self.epochs * max(1, len(train.y) // self.training.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
        info: dict[str, Any] = {"epochs_done": 0, "epochs": self.epochs, "losses": [], "train_s": 0.0}
        if checkpoint is not None:
            saved = torch.load(io.BytesIO(checkpoint), map_location=device, weights_only=True)
            supernet.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            schedule.load_state_dict(saved["schedule"])
            info = saved["info"]
        x, y = torch.from_numpy(train.x).to(device), torch.from_numpy(train.y).to(device)
        extremes = [
            self.trained_path(joint.extreme(arch, mild))
            for arch, mild in zip(self.space.extremes() or (), (True, False))
        ]
        supernet.train()
        for epoch in range(info["epochs_done"], min(self.epochs, info["epochs_done"] + epochs)):
            rng = np.random.default_rng([self.training.seed, epoch])
            torch.manual_seed(self.training.seed + epoch)
            losses = []
            for idx in batch_indices(train, self.training.batch_size, rng):
                rows = torch.from_numpy(idx).to(device)
                optimizer.zero_grad(set_to_none=True)
                if self.sandwich:  # BigNAS: the largest on the labels, the rest on its answers (its loss is recorded)
                    largest = path_logits(supernet, extremes[0], x[rows])
                    loss = F.cross_entropy(largest, y[rows])
                    _check(loss, epoch, extremes[0])
                    loss.backward()
                    soft = F.softmax(largest.detach(), dim=1)
                    randoms = (self.trained_path(joint.decode(joint.sample(rng))) for _ in range(self.sandwich))
                    for candidate in [extremes[1], *randoms]:
                        taught = F.kl_div(
                            F.log_softmax(path_logits(supernet, candidate, x[rows]), dim=1), soft, reduction="batchmean"
                        )
                        _check(taught, epoch, candidate)
                        taught.backward()
                else:  # single path: one random joint candidate per step, or FairNAS's set of them
                    samples = joint.fair_samples(rng) if self.sampling == "fair" else [joint.sample(rng)]
                    step_losses = []
                    for sample in samples:  # gradients add up over the step's paths; one update
                        candidate = self.trained_path(joint.decode(sample))
                        loss = F.cross_entropy(path_logits(supernet, candidate, x[rows]), y[rows])
                        _check(loss, epoch, candidate)
                        loss.backward()
                        step_losses.append(loss.detach())
                    loss = torch.stack(step_losses).mean()
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
            if hasattr(supernet, "sort_channels"):  # an elastic supernet keeps its shared channels first
                supernet.sort_channels(optimizer)
            info = {**info, "epochs_done": epoch + 1, "losses": [*info["losses"], float(np.mean(losses))]}
        info = {**info, "train_s": info["train_s"] + time.perf_counter() - start, "device": describe_device(device)}
        supernet.to("cpu")
        buffer = io.BytesIO()
        state = {"model": supernet.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
        torch.save({**state, "info": info}, buffer)
        return buffer.getvalue(), info

    def trained_path(self, candidate: Candidate) -> Candidate:
        """What a training step runs for a sampled `candidate`: all of it, or without
        `elastic_compression` its architecture alone (candidates are compressed after inheritance
        then, as `train` compresses a network trained in float: measured to rank more like it)."""
        return candidate if self.elastic_compression else Candidate(candidate.arch, Policy())

    def supernet_module(self) -> Any:
        import torch

        if self._supernet is None:
            if self.supernet_state is None:
                raise EvaluationError("the run's supernet is not trained yet (the controller trains it first)")
            supernet = self.new_supernet()
            saved = torch.load(io.BytesIO(self.supernet_state), map_location="cpu", weights_only=True)
            supernet.load_state_dict(saved["model"])
            self._supernet = supernet
        return self._supernet

    # --- each candidate -----------------------------------------------------------------
    def inherited(self, candidate: Candidate, data, into: Any = None, recalibrate: bool = True) -> Any:
        """`candidate`'s standalone network (`into`, where already built) with the supernet's
        weights and (`recalibrate`) its own BatchNorm statistics."""
        from cosearch.search_spaces.supernet import extract

        supernet = self.supernet_module()
        model = extract(self.space, supernet, candidate.arch, data.input_shape, data.num_classes, into)
        if recalibrate:
            self.recalibrate(model, candidate, shifted_views(data.train, self.training.shift_px))
        return model

    def recalibrate(self, model: Any, candidate: Candidate, train) -> None:
        """Re-estimate `model`'s BatchNorm statistics on `bn_batches` training batches."""
        import torch

        from cosearch.search_spaces.supernet import recalibrate_batchnorm

        rng = np.random.default_rng(self.seed_of(candidate))
        rows = islice(batch_indices(train, self.training.batch_size, rng), self.bn_batches)
        recalibrate_batchnorm(model, [torch.from_numpy(train.x[idx]) for idx in rows])

    def before_calibration(self, compressed: Any, candidate: Candidate, train) -> None:
        """BatchNorm statistics again, of the compressed weights: 4-bit or sparse layers move
        their outputs far from the float subnet's, and no training step follows to re-estimate them."""
        from cosearch.compressors.activations import unquantized_inputs

        with unquantized_inputs(compressed):
            self.recalibrate(compressed, candidate, train)

    def train(self, model: Any, candidate: Candidate, train, seed: int, distillation, device) -> Any:
        """No training: the inherited weights, loaded into the freshly built `model`. Their
        BatchNorm statistics are estimated once, after compression (`before_calibration`):
        compressing the weights does not read them, and the re-estimate replaces them."""
        return self.inherited(candidate, self.data.load(), into=model, recalibrate=False)

    def finetune(self, compressed: Any, train, seed: int, distillation, device) -> None:
        if self.finetune_steps > 0:
            lr = self.training.finetune_learning_rate
            epochs = -(-self.finetune_steps // max(1, len(train.y) // self.training.batch_size))
            train_epochs(compressed, train, epochs, lr, self.training, seed, None, device, self.finetune_steps)

    def training_record(self) -> dict[str, Any]:
        return {
            "how": "inherited from the run's supernet, BatchNorm recalibrated, compressed, then fine-tuned",
            "supernet_epochs": self.epochs,
            "bn_batches": self.bn_batches,
            "finetune_steps": self.finetune_steps,
            "sandwich": self.sandwich,
            "sampling": self.sampling,
            "elastic_compression": self.elastic_compression,
            "device": self.trained_on,
        }

    def final_evaluator(self, finalize: Any) -> TrainEvaluator:
        """Standalone training of the search's picks for `finalize.final_epochs`, from the
        inherited weights or from scratch (`finalize.start`), then compression as `train` does it."""
        settings = {
            "data": self.data,
            "training": self.training.model_copy(update={"epochs": finalize.final_epochs}),
            "devices": self.devices,
            "budgets": self.budgets,
            "temperature": self.temperature,
            "prefilter": False,  # its costs were known before the search picked it
            "compression": self.compression,
        }
        return FinalTraining(self.space, self if finalize.start == "inherited" else None, **settings)


class FinalTraining(TrainEvaluator):
    """The `train` evaluator for a supernet search's picks, starting from `source`'s inherited
    weights (BatchNorm recalibrated), or from scratch when `source` is None."""

    def __init__(self, space: Any, source: SupernetEvaluator | None, **settings: Any) -> None:
        super().__init__(space, **settings)
        self.source = source

    def initial_model(self, candidate: Candidate, data) -> Any:
        return super().initial_model(candidate, data) if self.source is None else self.source.inherited(candidate, data)

    def training_record(self) -> dict[str, Any]:
        start = "its inherited supernet weights" if self.source is not None else "scratch"
        return {**super().training_record(), "how": f"trained standalone from {start}"}


def _check(loss: Any, epoch: int, candidate: Candidate) -> None:
    import torch

    if not torch.isfinite(loss):
        raise EvaluationError(
            f"supernet training diverged: the loss became {loss.item()} in epoch {epoch + 1} "
            f"(sampled candidate {candidate.key}); lower training.learning_rate"
        )
