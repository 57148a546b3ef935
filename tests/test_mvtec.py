"""The MVTec-AD loader: layout, tensors, masks, and one clear message per kind of bad input."""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xadbench.datasets.mvtec import KNOWN_CLASSES, MVTecAD
from xadbench.errors import DataError


def _image(path: Path, size=(32, 32), mode="RGB", seed=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    channels = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8), mode).save(path)


def _mask(path: Path, size=(32, 32), values=(0, 255)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0]), values[0], np.uint8)
    array[: size[1] // 2, : size[0] // 2] = values[1]
    Image.fromarray(array).save(path)


def make_class(root: Path, name="widget", n_train=3, n_good=2, defects=None, size=(32, 32),
               mode="RGB") -> Path:
    """A small class folder in the MVTec layout, one mask per defective image."""
    defects = {"crack": 2} if defects is None else defects
    folder = root / name
    for i in range(n_train):
        _image(folder / "train" / "good" / f"{i:03d}.png", size, mode, seed=i)
    for i in range(n_good):
        _image(folder / "test" / "good" / f"{i:03d}.png", size, mode, seed=100 + i)
    for defect, count in defects.items():
        for i in range(count):
            _image(folder / "test" / defect / f"{i:03d}.png", size, mode, seed=200 + i)
            _mask(folder / "ground_truth" / defect / f"{i:03d}_mask.png", size)
    return folder


def test_loads_layout(tmp_path):
    make_class(tmp_path, defects={"crack": 2, "scratch": 1})
    task = MVTecAD(tmp_path).load("widget", 16)
    assert len(task.train) == 3
    assert all(s.label == 0 and s.category == "good" and s.mask is None for s in task.train)
    assert [s.key for s in task.test] == [
        "widget/test/crack/000.png", "widget/test/crack/001.png", "widget/test/good/000.png",
        "widget/test/good/001.png", "widget/test/scratch/000.png",
    ]
    assert [s.label for s in task.test] == [1, 1, 0, 0, 1]
    assert task.train[0].key == "widget/train/good/000.png"
    for s in [*task.train, *task.test]:
        assert s.image.shape == (3, 16, 16) and s.image.dtype == torch.float32
        assert 0.0 <= s.image.min() and s.image.max() <= 1.0
    for s in task.test:
        assert s.mask.dtype == torch.bool and s.mask.shape == (32, 32)
        assert bool(s.mask.any()) == (s.label == 1)
    assert int(task.test[0].mask.sum()) == 16 * 16


def test_classes_are_the_layout_folders(tmp_path):
    make_class(tmp_path, "widget")
    make_class(tmp_path, "bottle")
    (tmp_path / "notes").mkdir()
    (tmp_path / ".hidden" / "train").mkdir(parents=True)
    (tmp_path / "readme.txt").write_text("x")
    assert MVTecAD(tmp_path).classes() == ["bottle", "widget"]
    assert MVTecAD.profile == "mvtec" and MVTecAD.has_masks
    assert len(KNOWN_CLASSES) == 15 and "metal_nut" in KNOWN_CLASSES


def test_registered_as_plugin():
    from xadbench.registry import datasets

    assert datasets.get("mvtec") is MVTecAD


def test_greyscale_becomes_three_channels(tmp_path):
    make_class(tmp_path, mode="L")
    task = MVTecAD(tmp_path).load("widget", 8)
    image = task.train[0].image
    assert image.shape == (3, 8, 8)
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_varying_sizes_load_with_masks_at_own_size(tmp_path):
    folder = make_class(tmp_path, defects={"crack": 1})
    _image(folder / "train" / "good" / "010.png", size=(40, 24))
    _image(folder / "test" / "crack" / "005.png", size=(20, 36))
    _mask(folder / "ground_truth" / "crack" / "005_mask.png", size=(20, 36))
    _image(folder / "test" / "good" / "007.png", size=(50, 30))
    task = MVTecAD(tmp_path).load("widget", 16)
    assert all(s.image.shape == (3, 16, 16) for s in [*task.train, *task.test])
    masks = {s.key.rsplit("/", 2)[-2] + "/" + s.key.rsplit("/", 1)[-1]: s.mask for s in task.test}
    assert masks["crack/005.png"].shape == (36, 20)
    assert masks["good/007.png"].shape == (30, 50) and not masks["good/007.png"].any()


def test_root_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist") as info:
        MVTecAD(tmp_path / "nowhere").load("bottle", 16)
    assert "\n" not in str(info.value) and "nowhere" in str(info.value)
    with pytest.raises(DataError, match="needs --root <folder"):
        MVTecAD().classes()


def test_class_missing_suggests_closest(tmp_path):
    make_class(tmp_path, "bottle")
    with pytest.raises(DataError, match=r"'botle' not found.*did you mean 'bottle'"):
        MVTecAD(tmp_path).load("botle", 16)
    with pytest.raises(DataError, match=r"did you mean 'hazelnut'"):
        MVTecAD(tmp_path).load("hazelnutt", 16)


def test_missing_train_good(tmp_path):
    folder = make_class(tmp_path)
    (folder / "train" / "good").rename(folder / "train" / "ok")
    with pytest.raises(DataError, match=r"train/good is missing"):
        MVTecAD(tmp_path).load("widget", 16)


def test_empty_class(tmp_path):
    make_class(tmp_path, n_train=0)
    (tmp_path / "widget" / "train" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match=r"'widget' has no training images"):
        MVTecAD(tmp_path).load("widget", 16)


def test_defect_without_mask(tmp_path):
    folder = make_class(tmp_path)
    (folder / "ground_truth" / "crack" / "001_mask.png").unlink()
    with pytest.raises(DataError, match=r"test/crack/001.png has no mask: expected .*001_mask.png"):
        MVTecAD(tmp_path).load("widget", 16)


def test_mask_without_image(tmp_path):
    folder = make_class(tmp_path)
    _mask(folder / "ground_truth" / "crack" / "007_mask.png")
    with pytest.raises(DataError, match=r"007_mask.png has no image: expected .*crack/007.png"):
        MVTecAD(tmp_path).load("widget", 16)


def test_mask_of_wrong_size(tmp_path):
    folder = make_class(tmp_path)
    _mask(folder / "ground_truth" / "crack" / "000_mask.png", size=(16, 16))
    with pytest.raises(DataError, match=r"000_mask.png is 16x16 but its image .*000.png is 32x32"):
        MVTecAD(tmp_path).load("widget", 16)


def test_non_binary_masks_are_thresholded_with_one_warning(tmp_path):
    folder = make_class(tmp_path)
    _mask(folder / "ground_truth" / "crack" / "000_mask.png", values=(10, 200))
    _mask(folder / "ground_truth" / "crack" / "001_mask.png", values=(0, 100))
    message = r"2 mask\(s\) are not binary.*thresholded them at half scale"
    with pytest.warns(UserWarning, match=message) as rec:
        task = MVTecAD(tmp_path).load("widget", 16)
    assert len(rec) == 1
    assert int(task.test[0].mask.sum()) == 16 * 16
    assert not task.test[1].mask.any()  # 100 < 128


def test_zero_one_masks_are_binary(tmp_path):
    folder = make_class(tmp_path)
    _mask(folder / "ground_truth" / "crack" / "000_mask.png", values=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = MVTecAD(tmp_path).load("widget", 16)
    assert int(task.test[0].mask.sum()) == 16 * 16


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_names_the_file(tmp_path, damage):
    folder = make_class(tmp_path)
    path = folder / "test" / "good" / "001.png"
    data = path.read_bytes()
    path.write_bytes(b"not a png at all" if damage == "garbage" else data[: len(data) // 2])
    message = r"cannot decode image .*test/good/001.png.*corrupt"
    with pytest.raises(DataError, match=message) as info:
        MVTecAD(tmp_path).load("widget", 16)
    assert "\n" not in str(info.value)


def test_corrupt_mask_names_the_file(tmp_path):
    folder = make_class(tmp_path)
    (folder / "ground_truth" / "crack" / "000_mask.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match=r"cannot decode image .*000_mask.png"):
        MVTecAD(tmp_path).load("widget", 16)


def test_non_image_files_skipped_with_one_warning(tmp_path):
    folder = make_class(tmp_path)
    (folder / "train" / "good" / "notes.txt").write_text("x")
    (folder / "test" / "crack" / "labels.csv").write_text("x")
    (folder / "train" / "good" / ".DS_Store").write_bytes(b"\0")
    (folder / "readme.txt").write_text("documentation beside the layout is not read")
    with pytest.warns(UserWarning, match=r"skipped 2 non-image entries.*notes.txt") as rec:
        task = MVTecAD(tmp_path).load("widget", 16)
    assert len(rec) == 1
    assert len(task.train) == 3 and len(task.test) == 4


def test_hidden_files_skipped_silently(tmp_path):
    folder = make_class(tmp_path)
    (folder / "train" / "good" / ".DS_Store").write_bytes(b"\0")
    (folder / "test" / "good" / "._000.png").write_bytes(b"\0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = MVTecAD(tmp_path).load("widget", 16)
    assert len(task.train) == 3


@pytest.mark.slow
@pytest.mark.realdata
def test_real_bottle(shared_data):
    root = shared_data / "mvtec_ad"
    if not (root / "bottle").is_dir():
        pytest.skip(f"real MVTec-AD bottle class not found at {root / 'bottle'} "
                    "(../shared/data is only present on the project's own machines)")
    dataset = MVTecAD(root)
    assert "bottle" in dataset.classes()
    task = dataset.load("bottle", 32)
    assert len(task.train) == 209
    assert Counter(s.category for s in task.test) == {
        "good": 20, "broken_large": 20, "broken_small": 22, "contamination": 21}
    assert task.test[0].key == "bottle/test/broken_large/000.png"
    for s in task.test:
        assert s.image.shape == (3, 32, 32)
        assert s.mask.shape == (384, 384)
        assert bool(s.mask.any()) == (s.category != "good") == (s.label == 1)
