"""A user's own images: an ImageFolder-style folder and a .npz of arrays, built here, and their bad forms."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from cosearch.core.errors import SpecError
from cosearch.evaluators.data import check_dataset_path, input_shape, load_dataset, num_classes


def write_folder(root, classes=("cat", "dog", "owl"), per_class=12, size=(10, 10), mode="L", splits=None):
    rng = np.random.default_rng(0)
    for split in splits or [None]:
        base = root / split if split else root
        for k, name in enumerate(classes):
            (base / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
                pixels = np.clip(rng.normal(40 + 80 * k, 20, shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels, mode).save(base / name / f"{i}.png")
    return root


def test_a_folder_of_classes_loads_split_and_standardised(tmp_path):
    root = str(write_folder(tmp_path / "imgs"))
    check_dataset_path("folder", root)
    assert input_shape("folder", None, root) == (1, 10, 10) and num_classes("folder", root) == 3
    data = load_dataset("folder", root, 0.2, 0.2, 0)
    assert data.num_classes == 3 and data.input_shape == (1, 10, 10)
    assert len(data.train.y) + len(data.val.y) + len(data.test.y) == 36
    assert set(data.test.y.tolist()) == {0, 1, 2}  # stratified
    assert abs(float(data.train.x.mean())) < 1e-3 and abs(float(data.train.x.std()) - 1) < 1e-2
    # the classes are the sorted folder names, and the label follows the image's folder
    means = [float(data.train.x[data.train.y == k].mean()) for k in range(3)]
    assert means == sorted(means)


def test_a_folder_is_decoded_once_and_read_from_disk(tmp_path, dataset_cache):
    from cosearch.evaluators import own_data

    root = str(write_folder(tmp_path / "imgs"))
    first = own_data.stream_folder(root, (1, 10, 10), 0.2, 0.2, 0)
    x, _ = first["train"]
    assert isinstance(x, np.memmap) and str(x.filename).startswith(dataset_cache)  # mapped, not loaded
    decoded = sorted(own_data.cache_root().iterdir())
    again = own_data.stream_folder(root, (1, 10, 10), 0.2, 0.2, 0)
    assert sorted(own_data.cache_root().iterdir()) == decoded and np.array_equal(again["train"][0], x)
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(tmp_path / "imgs" / "cat" / "0.png")  # a changed image
    changed = own_data.stream_folder(root, (1, 10, 10), 0.2, 0.2, 0)
    assert len(list(own_data.cache_root().iterdir())) == len(decoded) + 1
    assert not np.array_equal(changed["train"][0], x) or not np.array_equal(changed["test"][0], first["test"][0])
    x[:] = 0  # copy-on-write: the cached file is not changed by whoever writes into the arrays
    assert np.array_equal(own_data.stream_folder(root, (1, 10, 10), 0.2, 0.2, 0)["train"][0], again["train"][0])


def test_a_folder_with_train_val_test_keeps_them_and_resizes(tmp_path):
    root = str(write_folder(tmp_path / "imgs", size=(12, 9), mode="RGB", per_class=4, splits=["train", "val", "test"]))
    data = load_dataset("folder", root, 0.2, 0.2, 0, 16)
    assert data.input_shape == (3, 16, 16) and [len(s.y) for s in (data.train, data.val, data.test)] == [12, 12, 12]


def test_arrays_in_every_layout_load(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 10)
    for name, x in {
        "nhw": rng.integers(0, 255, (40, 8, 8)).astype(np.uint8),
        "nchw": rng.random((40, 3, 8, 8)).astype(np.float32),
        "nhwc": rng.random((40, 8, 8, 3)),
    }.items():
        path = str(tmp_path / f"{name}.npz")
        np.savez(path, x_train=x, y_train=y)
        data = load_dataset("arrays", path, 0.2, 0.2, 0)
        channels = 1 if name == "nhw" else 3
        assert data.input_shape == (channels, 8, 8) == input_shape("arrays", None, path) and data.num_classes == 4
        assert data.train.x.dtype == np.float32 and len(data.test.y) == 8
    path = str(tmp_path / "given.npz")
    np.savez(path, x_train=rng.random((40, 8, 8)), y_train=y, x_test=rng.random((6, 8, 8)), y_test=y[:6])
    data = load_dataset("arrays", path, 0.2, 0.2, 0, 16)
    assert len(data.test.y) == 6 and data.input_shape == (1, 16, 16)


BAD = {
    "one class": lambda d: (write_folder(d / "f", classes=("only",)), "at least 2 class subfolders"),
    "mixed channels": lambda d: (_mixed_channels(d), "one channel count"),
    "empty": lambda d: ((d / "f").mkdir() or d / "f", "one subfolder of images per class"),
}


def _mixed_channels(d):
    root = write_folder(d / "f")
    Image.fromarray(np.zeros((10, 10, 3), np.uint8), "RGB").save(root / "cat" / "colour.png")
    return root


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_folder_is_refused_naming_what_is_wrong(tmp_path, case):
    root, words = BAD[case](tmp_path)
    with pytest.raises(SpecError, match=words) as error:
        check_dataset_path("folder", str(root))
    assert error.value.field == "task.path"


def test_images_of_different_sizes_need_an_image_size(tmp_path):
    root = write_folder(tmp_path / "f")
    Image.fromarray(np.zeros((7, 7), np.uint8), "L").save(root / "cat" / "small.png")
    with pytest.raises(SpecError, match="differ in size") as error:
        check_dataset_path("folder", str(root))
    assert error.value.field == "task.image_size"
    check_dataset_path("folder", str(root), 12)


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"x_train": np.zeros((4, 8, 8))}, "y_train is missing"),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(3, int)}, "one integer label per image"),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, int)}, "at least 2 classes"),
        ({"x_train": np.zeros((4, 5, 8, 8)), "y_train": np.arange(4)}, "1 or 3 channels"),
        ({"x_train": np.zeros((4, 8, 8)), "y_train": np.arange(4), "x_val": np.zeros((2, 8, 8))}, "together"),
    ],
)
def test_a_bad_npz_is_refused_naming_what_is_wrong(tmp_path, arrays, words):
    path = str(tmp_path / "a.npz")
    np.savez(path, **arrays)
    with pytest.raises(SpecError, match=words):
        check_dataset_path("arrays", path)


def test_cli_refuses_a_bad_folder_with_exit_2_and_writes_nothing(tmp_path, cosearch_cli):
    root = write_folder(tmp_path / "f", classes=("only",))
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({"task": {"dataset": "folder", "path": str(root)}}))
    out = cosearch_cli("run", str(job), "--run-dir", str(tmp_path / "run"), timeout=120)
    assert out.returncode == 2 and "task.path" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.ray
def test_a_search_trains_on_a_folder_and_reads_back_after_it_moves(tmp_path, ray_local):
    import cosearch

    root = write_folder(tmp_path / "imgs", per_class=15, mode="RGB")
    job = {
        "task": {"dataset": "folder", "path": str(root), "image_size": 12},
        "search_space": {"name": "nb201", "channels": 4, "cells_per_stage": 1},
        "strategy": {"name": "random"},
        "training": {"epochs": 1, "finetune_epochs": 0},
        "resources": {"trials": 2, "concurrency": 2},
    }
    run = cosearch.search(job, run_dir=tmp_path / "run", progress=False)
    assert [r.status for r in run.results()] == ["ok", "ok"]
    assert all(r.metrics["accuracy"] >= 0 for r in run.results())
    root.rename(tmp_path / "moved")
    assert cosearch.open_run(tmp_path / "run").status()["state"] == "finished" and run.pareto()
