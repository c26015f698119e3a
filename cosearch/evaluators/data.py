"""Datasets as numpy arrays, split once per seed: digits (built in), CIFAR-10 from a local path, and a
user's own image folder or `.npz` arrays (`own_data`)."""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from cosearch.core.errors import SpecError

DATASETS = ("digits", "cifar10", "folder", "arrays")
INPUT_SHAPES = {"digits": (1, 8, 8), "cifar10": (3, 32, 32)}  # (C, H, W) each built-in dataset loads as
NUM_CLASSES = {"digits": 10, "cifar10": 10}
OWN = ("folder", "arrays")  # read from task.path: shape and classes come from the files
CIFAR10_MEAN = np.array([0.4914, 0.4822, 0.4465], dtype=np.float32).reshape(1, 3, 1, 1)
CIFAR10_STD = np.array([0.2470, 0.2435, 0.2616], dtype=np.float32).reshape(1, 3, 1, 1)


@dataclass(frozen=True)
class Split:
    x: np.ndarray  # (N, C, H, W) float32
    y: np.ndarray  # (N,) int64


DIGEST_ROWS = 1024  # rows a digest reads, evenly spread: enough to tell another order or view apart


def views_digest(split: Split) -> str:
    """A fingerprint of a split's images in their order (shape and up to DIGEST_ROWS evenly spread
    rows): teacher logits carry the one of the views they were computed on, and an evaluation that
    trains on other views (another split, order or shift) is refused instead of learning from
    logits of other images."""
    rows = np.unique(np.linspace(0, len(split.x) - 1, min(len(split.x), DIGEST_ROWS)).astype(int))
    digest = hashlib.sha256(str(split.x.shape).encode())
    digest.update(np.ascontiguousarray(split.x[rows], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class TeacherLogits:
    """A teacher's logits, row i for training view i, and the digest of the views they were computed on."""

    values: np.ndarray
    views: str | None = None  # None: unknown (runs stored before digests; arrays given directly)


def shifted_views(split: Split, shift_px: int) -> Split:
    """Every image moved by each (dy, dx) in [-shift_px, shift_px]^2, zero filled: (2s+1)^2 views,
    the unshifted one among them, stacked view by view (row v * N + i is image i in view v).

    Fixed views rather than random crops, so a teacher's logits can be computed for each view
    once per run. Distillation needs them: on the digits a teacher's soft labels on the training
    images alone did not help a narrow student, on shifted views they closed most of the gap.
    """
    if shift_px == 0:
        return split
    height, width = split.x.shape[-2:]
    views = []
    for dy in range(-shift_px, shift_px + 1):
        for dx in range(-shift_px, shift_px + 1):
            view = np.zeros_like(split.x)
            view[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = split.x[
                ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
            ]
            views.append(view)
    return Split(np.concatenate(views), np.tile(split.y, len(views)))


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.x.shape[1:])


def _stratified_split(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    from sklearn.model_selection import train_test_split

    x_rest, x_test, y_rest, y_test = train_test_split(x, y, test_size=test_fraction, stratify=y, random_state=seed)
    val_share = val_fraction / (1.0 - test_fraction)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_share, stratify=y_rest, random_state=seed
    )
    return Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships inside scikit-learn: no download

    digits = load_digits()
    x = (digits.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return (x - 0.5) / 0.5, digits.target.astype(np.int64)


def _cifar10_batches(path: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        with open(path / name, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch["labels"], dtype=np.int64))
    x = np.concatenate(xs).astype(np.float32) / 255.0
    return (x - CIFAR10_MEAN) / CIFAR10_STD, np.concatenate(ys)


def check_dataset_path(dataset: str, path: str | None, image_size: int | None = None) -> None:
    """Raise SpecError unless `path` holds what `dataset` reads (nothing is downloaded)."""
    if dataset == "digits":
        return
    if dataset in OWN:
        own_info(dataset, path, image_size)
        return
    if dataset == "cifar10":
        folder = Path(path) if path else None
        if folder is None or not (folder / "data_batch_1").is_file() or not (folder / "test_batch").is_file():
            raise SpecError(
                "task.path", path, "a local 'cifar-10-batches-py' folder with data_batch_1..5 and test_batch"
            )
        return
    raise SpecError("task.dataset", dataset, f"one of {list(DATASETS)}")


def input_shape(dataset: str, image_size: int | None = None, path: str | None = None) -> tuple[int, int, int]:
    """(C, H, W) of `dataset`'s images, resized to `image_size` squares where given (a user's own
    data is read for it: call this where its files are checked, at run or resume)."""
    if dataset in OWN:
        return own_info(dataset, path, image_size)[0]
    channels, height, width = INPUT_SHAPES[dataset]
    return (channels, image_size, image_size) if image_size else (channels, height, width)


def num_classes(dataset: str, path: str | None = None) -> int:
    return own_info(dataset, path, None)[1] if dataset in OWN else NUM_CLASSES[dataset]


@lru_cache(maxsize=8)
def own_info(dataset: str, path: str | None, image_size: int | None) -> tuple[tuple[int, int, int], int]:
    """((C, H, W), classes) of a user's folder or arrays, checked (headers and names only)."""
    from cosearch.evaluators import own_data

    if not path:
        raise SpecError("task.path", path, f"the {'folder' if dataset == 'folder' else '.npz file'} to read")
    check = own_data.check_folder if dataset == "folder" else own_data.check_arrays
    return check(path, image_size)


def resized(split: Split, image_size: int) -> Split:
    """`split` with its images resized (bilinear) to `image_size` squares, in batches."""
    import torch
    import torch.nn.functional as F

    if split.x.shape[-2:] == (image_size, image_size):
        return split
    out = [
        F.interpolate(torch.from_numpy(split.x[i : i + 1024]), size=(image_size, image_size), mode="bilinear")
        for i in range(0, len(split.x), 1024)
    ]
    return Split(torch.cat(out).numpy(), split.y)


@lru_cache(maxsize=4)
def load_dataset(
    name: str = "digits",
    path: str | None = None,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    seed: int = 0,
    image_size: int | None = None,
) -> Dataset:
    """Load and split a dataset (its images resized to `image_size` squares where given); cached
    per process so a Ray worker loads it once."""
    if name in OWN:
        return _own_dataset(name, path, val_fraction, test_fraction, seed, image_size)
    if image_size:
        data = load_dataset(name, path, val_fraction, test_fraction, seed)
        splits = (resized(part, image_size) for part in (data.train, data.val, data.test))
        return Dataset(data.name, *splits, num_classes=data.num_classes)
    check_dataset_path(name, path)
    if name == "digits":
        x, y = _digits()
        train, val, test = _stratified_split(x, y, val_fraction, test_fraction, seed)
        return Dataset(name, train, val, test, num_classes=10)
    folder = Path(path)  # type: ignore[arg-type]
    x, y = _cifar10_batches(folder, [f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = _cifar10_batches(folder, ["test_batch"])
    from sklearn.model_selection import train_test_split

    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=val_fraction, stratify=y, random_state=seed)
    return Dataset(name, Split(x_train, y_train), Split(x_val, y_val), Split(x_test, y_test), num_classes=10)


def _own_dataset(
    name: str, path: str | None, val_fraction: float, test_fraction: float, seed: int, image_size: int | None
) -> Dataset:
    """A user's folder (decoded once, read from disk as training draws it) or arrays (in memory):
    the splits it has, the rest cut from its training images, standardised per channel on the
    training split."""
    from cosearch.evaluators import own_data

    shape, classes = own_info(name, path, image_size)
    if name == "folder":
        parts = own_data.stream_folder(path, shape, val_fraction, test_fraction, seed)
        return Dataset(name, *(Split(*parts[s]) for s in ("train", "val", "test")), num_classes=classes)
    arrays = own_data.load_arrays(path)
    plan = own_data.plan_splits({s: y for s, (_, y) in arrays.items()}, val_fraction, test_fraction, seed)
    train, val, test = (
        (arrays[source][0][rows], arrays[source][1][rows])
        for source, rows in (plan[s] for s in ("train", "val", "test"))
    )
    mean = train[0].mean(axis=(0, 2, 3), keepdims=True)
    std = train[0].std(axis=(0, 2, 3), keepdims=True) + np.float32(1e-6)
    parts = [Split((x - mean) / std, y) for x, y in (train, val, test)]
    if image_size:
        parts = [resized(part, image_size) for part in parts]
    return Dataset(name, *parts, num_classes=classes)
