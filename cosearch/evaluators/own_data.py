"""A user's own images: a folder in torchvision's ImageFolder layout, or arrays in a `.npz`.

- `task.dataset: folder`, `task.path: DIR`: one subfolder per class (`DIR/cat/*.png`), or the same
  under `DIR/train/` with optional `DIR/val/` and `DIR/test/` of the same classes. Classes are the
  sorted subfolder names (torchvision's `ImageFolder`, which also finds the images). Images of
  different sizes need `task.image_size`; grey and colour images may not be mixed.
- `task.dataset: arrays`, `task.path: FILE.npz`: `x_train` and `y_train`, optionally `x_val` /
  `y_val` and `x_test` / `y_test`; images (N, H, W), (N, C, H, W) or (N, H, W, C) with 1 or 3
  channels, integer labels 0..K-1.

Splits not given are cut from the training images, stratified, as for the built-in datasets.
Pixels are scaled to [0, 1] (from uint8) and standardised per channel with the training split's
mean and standard deviation. A folder is decoded once into a cache and read memory-mapped
(`stream_folder`); arrays are read into memory. Checks (`check`) read only headers and file names, so a bad folder
or file is refused before a run writes anything; `peek` gives the input shape and class count.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from cosearch.core.errors import SpecError

SPLITS = ("train", "val", "test")
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})  # PIL modes read as one channel; the rest as RGB


# --- folder ---------------------------------------------------------------------------------
def _folder_splits(root: Path) -> dict[str, Path]:
    """The split folders: `train/` (+ `val/`, `test/`) when there is a `train/`, else the root as one."""
    if (root / "train").is_dir():
        return {name: root / name for name in SPLITS if (root / name).is_dir()}
    return {"all": root}


def _image_folder(folder: Path, path: str):
    from torchvision.datasets import ImageFolder

    try:
        return ImageFolder(str(folder), loader=lambda p: p)  # file names only: nothing decoded yet
    except (FileNotFoundError, OSError) as error:
        raise SpecError("task.path", path, f"a folder with one subfolder of images per class ({error})") from None


def _scan_folder(path: str) -> dict[str, Any]:
    root = Path(path)
    if not root.is_dir():
        raise SpecError("task.path", path, "an existing folder of class subfolders (ImageFolder layout)")
    splits = {name: _image_folder(folder, path) for name, folder in _folder_splits(root).items()}
    classes = next(iter(splits.values())).classes
    for name, split in splits.items():
        if split.classes != classes:
            raise SpecError(
                "task.path",
                path,
                f"the same class subfolders in every split ({name}/ has {split.classes}, not {classes})",
            )
    if len(classes) < 2:
        raise SpecError("task.path", path, f"at least 2 class subfolders (found {classes})")
    return {"splits": splits, "classes": classes}


def _image_header(file: str) -> tuple[int, tuple[int, int]]:
    from PIL import Image

    with Image.open(file) as image:  # reads the header only
        return (1 if image.mode in GREY_MODES else 3), (image.height, image.width)


def check_folder(path: str, image_size: int | None) -> tuple[tuple[int, int, int], int]:
    """Raise SpecError unless `path` is a usable image folder; (C, H, W) as loaded, class count."""
    scan = _scan_folder(path)
    channels: dict[int, str] = {}
    sizes: dict[tuple[int, int], str] = {}
    for split in scan["splits"].values():
        for file, _ in split.samples:
            try:
                count, size = _image_header(file)
            except OSError as error:
                raise SpecError("task.path", path, f"readable images ({file}: {error})") from None
            channels.setdefault(count, file)
            sizes.setdefault(size, file)
    if len(channels) > 1:
        (a, file_a), (b, file_b) = list(channels.items())[:2]
        raise SpecError(
            "task.path",
            path,
            f"images with one channel count ({file_a} has {a}, {file_b} has {b}): convert them to one mode",
        )
    if len(sizes) > 1 and image_size is None:
        (a, file_a), (b, file_b) = list(sizes.items())[:2]
        raise SpecError(
            "task.image_size",
            None,
            f"a size to resize to: the images differ in size ({file_a} is {a[0]}x{a[1]}, {file_b} is {b[0]}x{b[1]})",
        )
    (count,) = channels
    height, width = next(iter(sizes))
    return (count, image_size or height, image_size or width), len(scan["classes"])


def _decode(file: str, channels: int, height: int, width: int) -> np.ndarray:
    """One image as (C, H, W) float32 in [0, 1], resized where its size differs."""
    from PIL import Image

    with Image.open(file) as image:
        image = image.convert("L" if channels == 1 else "RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    return pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)


def cache_root() -> Path:
    """Where decoded folders are kept: $COSEARCH_CACHE, else $XDG_CACHE_HOME/cosearch, else ~/.cache/cosearch."""
    root = os.environ.get("COSEARCH_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "cosearch")
    return Path(root).expanduser() / "datasets"


def stream_folder(
    path: str, shape: tuple[int, int, int], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train / val / test of an image folder as memory-mapped, standardised float32 arrays.

    The images are decoded once into `.npy` files under `cache_root()` (keyed by every file's name,
    size and modification time, the image size, the split fractions and the seed), image by image,
    and read back with `mmap_mode`: training reads the batches it draws from disk through the page
    cache, so a folder larger than memory trains, and every worker of a run shares one decoding.
    `shape` is (C, H, W) as `check_folder` gave it (the caller has checked the folder)."""
    splits = _scan_folder(path)["splits"]
    files = {name: [file for file, _ in split.samples] for name, split in splits.items()}
    labels = {name: np.asarray(split.targets, dtype=np.int64) for name, split in splits.items()}
    stats = {name: [os.stat(f) for f in fs] for name, fs in files.items()}
    identity = json.dumps(
        {
            "version": 1,
            "files": {n: [(f, s.st_size, s.st_mtime_ns) for f, s in zip(files[n], stats[n])] for n in files},
            "shape": list(shape),
            "split": [val_fraction, test_fraction, seed],
        },
        sort_keys=True,
    )
    folder = cache_root() / hashlib.sha256(identity.encode()).hexdigest()[:24]
    if not (folder / "complete").is_file():
        _decode_folder(folder, files, labels, shape, plan_splits(labels, val_fraction, test_fraction, seed))
    return {
        name: (np.load(folder / f"x_{name}.npy", mmap_mode="c"), np.load(folder / f"y_{name}.npy"))
        for name in ("train", "val", "test")
    }


def _decode_folder(folder: Path, files, labels, shape, plan) -> None:
    """Decode every split into a fresh directory beside `folder`, standardise it on the training
    split's per-channel statistics, then move it into place (another worker may have won: fine)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=folder.name + ".", dir=folder.parent))
    try:
        total = np.zeros(shape[0], np.float64)
        squares = np.zeros(shape[0], np.float64)
        arrays = {}
        for name in ("train", "val", "test"):
            source, rows = plan[name]
            x = np.lib.format.open_memmap(
                work / f"x_{name}.npy", mode="w+", dtype=np.float32, shape=(len(rows), *shape)
            )
            for i, row in enumerate(rows):
                x[i] = _decode(files[source][row], *shape)
                if name == "train":
                    total += x[i].sum(axis=(1, 2))
                    squares += np.square(x[i], dtype=np.float64).sum(axis=(1, 2))
            np.save(work / f"y_{name}.npy", labels[source][rows])
            arrays[name] = x
        count = len(plan["train"][1]) * shape[1] * shape[2]
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0)) + 1e-6
        mean, std = (v.astype(np.float32)[:, None, None] for v in (mean, std))
        for x in arrays.values():
            for i in range(0, len(x), 1024):
                x[i : i + 1024] = (x[i : i + 1024] - mean) / std
            x.flush()
        (work / "complete").write_text("")
        try:
            work.rename(folder)
        except OSError:  # decoded by another worker meanwhile
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def plan_splits(
    labels: dict[str, np.ndarray], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, tuple[str, np.ndarray]]:
    """train / val / test as (the split they come from, its rows): splits given stay as they are,
    the others are cut from the training rows, stratified (test first, then val)."""
    from sklearn.model_selection import train_test_split

    source = "train" if "train" in labels else "all"
    rows = np.arange(len(labels[source]))
    plan = {}
    if "test" in labels:
        plan["test"] = ("test", np.arange(len(labels["test"])))
    else:
        rows, cut = train_test_split(rows, test_size=test_fraction, stratify=labels[source][rows], random_state=seed)
        plan["test"] = (source, cut)
    if "val" in labels:
        plan["val"] = ("val", np.arange(len(labels["val"])))
    else:
        share = val_fraction if "test" in labels else val_fraction / (1.0 - test_fraction)
        rows, cut = train_test_split(rows, test_size=share, stratify=labels[source][rows], random_state=seed)
        plan["val"] = (source, cut)
    plan["train"] = (source, rows)
    return plan


# --- arrays ---------------------------------------------------------------------------------
def _npz_headers(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in a .npz, from the .npy headers (nothing loaded)."""
    if not Path(path).is_file():
        raise SpecError("task.path", path, "an existing .npz file with x_train and y_train")
    try:
        with zipfile.ZipFile(path) as archive:
            headers = {}
            for member in archive.namelist():
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(handle)
                headers[member.removesuffix(".npy")] = (tuple(shape), dtype)
            return headers
    except (zipfile.BadZipFile, ValueError, OSError) as error:
        raise SpecError("task.path", path, f"a .npz file written by numpy.savez ({error})") from None


def _layout(shape: tuple[int, ...]) -> str | None:
    """How images of `shape` (N first) are laid out: "NHW", "NCHW", "NHWC", or None."""
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "NCHW"
    if len(shape) == 4 and shape[3] in (1, 3):
        return "NHWC"
    return None


def check_arrays(path: str, image_size: int | None) -> tuple[tuple[int, int, int], int]:
    """Raise SpecError unless `path` is a usable .npz; (C, H, W) as loaded, class count."""
    headers = _npz_headers(path)
    for key in ("x_train", "y_train"):
        if key not in headers:
            raise SpecError(
                "task.path", path, f"a .npz with x_train and y_train ({key} is missing; it has {sorted(headers)})"
            )
    shapes = {}
    for split in SPLITS:
        x, y = f"x_{split}", f"y_{split}"
        if (x in headers) != (y in headers):
            raise SpecError("task.path", path, f"{x} and {y} together (only one of them is in the file)")
        if x not in headers:
            continue
        (x_shape, _), (y_shape, y_dtype) = headers[x], headers[y]
        layout = _layout(x_shape)
        if layout is None:
            raise SpecError(
                "task.path",
                path,
                f"{x} shaped (N, H, W), (N, C, H, W) or (N, H, W, C) with 1 or 3 channels, not {x_shape}",
            )
        if len(y_shape) != 1 or y_shape[0] != x_shape[0] or y_dtype.kind not in "iu":
            raise SpecError(
                "task.path", path, f"{y}: one integer label per image of {x} ({x_shape[0]}), not {y_shape} {y_dtype}"
            )
        shapes[split] = _chw(x_shape, layout)
    if len(set(shapes.values())) > 1:
        raise SpecError("task.path", path, f"images of one shape in every split (got {shapes})")
    labels = np.load(path)["y_train"]
    classes = int(labels.max()) + 1 if len(labels) else 0
    if labels.min(initial=0) < 0 or len(np.unique(labels)) < 2:
        raise SpecError("task.path", path, "y_train with at least 2 classes, labelled 0..K-1")
    channels, height, width = shapes["train"]
    return (channels, image_size or height, image_size or width), classes


def _chw(shape: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    if layout == "NHW":
        return (1, shape[1], shape[2])
    if layout == "NCHW":
        return (shape[1], shape[2], shape[3])
    return (shape[3], shape[1], shape[2])


def load_arrays(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every split the file has, as (float32 images in [0, 1] if stored as uint8, labels)."""
    with np.load(path) as arrays:
        out = {}
        for split in SPLITS:
            if f"x_{split}" not in arrays:
                continue
            x = arrays[f"x_{split}"]
            layout = _layout(x.shape)
            x = x[:, None] if layout == "NHW" else x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
            x = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
            out[split] = (np.ascontiguousarray(x), arrays[f"y_{split}"].astype(np.int64))
    return out
