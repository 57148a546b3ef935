"""The VisA, MVTec AD 2, BTAD, MPDD and folder-with-masks loaders on replicas of their published
layouts written here (a few tiny images per class), and one clear line per malformed tree."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_mvtec import _image, make_class
from xadbench.datasets.btad import BTAD
from xadbench.datasets.folder_masks import FolderMasks
from xadbench.datasets.mpdd import MPDD
from xadbench.datasets.mvtec_ad2 import MVTecAD2
from xadbench.datasets.visa import VisA
from xadbench.errors import DataError


def _index_mask(path: Path, size: tuple[int, int], value: int, box: tuple[int, int, int, int]) -> None:
    """A mask holding `value` (VisA: a small defect index, not 255) inside box (x0, y0, x1, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size[1], size[0]), np.uint8)
    array[box[1]:box[3], box[0]:box[2]] = value
    Image.fromarray(array).save(path)


#: VisA replica: classes with different image sizes, as in the real set.
VISA_SIZES = {"candle": (30, 20), "pcb1": (24, 36)}


def make_visa(root: Path, sizes=VISA_SIZES, n_train=3, n_normal=2, n_anomaly=2) -> Path:
    """VisA's archive layout: <class>/Data/Images/{Normal,Anomaly}/*.JPG, <class>/Data/Masks/Anomaly/*.png
    (values 0 and small indices) and split_csv/1cls.csv listing them."""
    rows = [["object", "split", "label", "image", "mask"]]
    for c, (name, size) in enumerate(sizes.items()):
        for i in range(n_train + n_normal):
            image = f"{name}/Data/Images/Normal/{i:04d}.JPG"
            _image(root / image, size, seed=10 * c + i)
            rows.append([name, "train" if i < n_train else "test", "normal", image, ""])
        for i in range(n_anomaly):
            image, mask = f"{name}/Data/Images/Anomaly/{i:03d}.JPG", f"{name}/Data/Masks/Anomaly/{i:03d}.png"
            _image(root / image, size, seed=100 + 10 * c + i)
            _index_mask(root / mask, size, value=1 + i, box=(2, 3, 8, 7))
            rows.append([name, "test", "anomaly", image, mask])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return root


def make_mvtec_ad2(root: Path, name="can", size=(20, 16)) -> Path:
    """MVTec AD 2: train/good, validation/good, test_public/{good,bad,ground_truth/bad}, and the
    unlabelled private splits."""
    folder = root / name
    for i in range(3):
        _image(folder / "train" / "good" / f"{i:03d}_regular.png", size, seed=i)
        _image(folder / "validation" / "good" / f"{i:03d}_regular.png", size, seed=20 + i)
        _image(folder / "test_private" / f"{i:03d}.png", size, seed=40 + i)
        _image(folder / "test_private_mixed" / f"{i:03d}.png", size, seed=60 + i)
    for i in range(2):
        _image(folder / "test_public" / "good" / f"{i:03d}_regular.png", size, seed=80 + i)
        _image(folder / "test_public" / "bad" / f"{i:03d}_regular.png", size, seed=90 + i)
        _index_mask(folder / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png", size, 255,
                    (1, 1, 5 + i, 4))
    return root


def make_btad(root: Path, name="01", size=(16, 24), seed=0) -> Path:
    """BTAD: train/ok, test/{ok,ko} as .bmp and ground_truth/ko/<same stem>.png."""
    folder = root / name
    for i in range(3):
        _image(folder / "train" / "ok" / f"{i:04d}.bmp", size, seed=seed + i)
    for i in range(2):
        _image(folder / "test" / "ok" / f"{i:04d}.bmp", size, seed=seed + 50 + i)
        _image(folder / "test" / "ko" / f"{i:04d}.bmp", size, seed=seed + 60 + i)
        _index_mask(folder / "ground_truth" / "ko" / f"{i:04d}.png", size, 255, (0, 0, 4, 6 + i))
    return root


def make_folder_masks(root: Path, n_good=10, size=(16, 16)) -> Path:
    """anomalib's Folder convention: good/, crack/ and scratch/ beside mask/ (masks by stem)."""
    for i in range(n_good):
        _image(root / "good" / f"g{i:02d}.png", size, seed=i)
    for defect, count in (("crack", 2), ("scratch", 1)):
        for i in range(count):
            _image(root / defect / f"{defect}{i}.png", size, seed=70 + i)
            _index_mask(root / "mask" / f"{defect}{i}.png", size, 255, (0, 0, 3 + i, 5))
    return root


# -- VisA ------------------------------------------------------------------------------------------

def test_visa_reads_the_split_csv_and_non_zero_mask_values(tmp_path):
    make_visa(tmp_path)
    data = VisA(tmp_path)
    assert data.classes() == ["candle", "pcb1"] and data.profile == "mvtec" and data.has_masks
    task = data.load("pcb1", 8)
    assert [s.key for s in task.train] == [f"pcb1/Data/Images/Normal/{i:04d}.JPG" for i in range(3)]
    assert [(s.label, s.category) for s in task.test] == [(0, "normal")] * 2 + [(1, "anomaly")] * 2
    for s in task.test:
        assert s.image.shape == (3, 8, 8) and s.mask.shape == (36, 24)  # masks at the class's own size
    # Mask values 1 and 2 (not 255) are defects: a 6x4 box, the same count as counted by hand.
    expected = torch.zeros((36, 24), dtype=torch.bool)
    expected[3:7, 2:8] = True
    assert torch.equal(task.test[2].mask, expected) and torch.equal(task.test[3].mask, expected)
    assert not task.test[0].mask.any()
    assert data.load("candle", 8).test[0].mask.shape == (20, 30)
    data.check("candle", 8)


def test_visa_registered():
    from xadbench.registry import datasets

    assert datasets.get("visa") is VisA


def _rewrite_csv(root: Path, edit) -> None:
    path = root / "split_csv" / "1cls.csv"
    rows = list(csv.reader(path.open()))
    rows = edit(rows)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)


def _visa_error(root: Path, name: str = "candle") -> str:
    with pytest.raises(DataError) as by_check:
        VisA(root).check(name, 8)
    with pytest.raises(DataError) as by_load:
        VisA(root).load(name, 8)
    assert str(by_check.value) == str(by_load.value) and "\n" not in str(by_load.value)
    return str(by_load.value)


def test_visa_defect_image_without_its_mask(tmp_path):
    make_visa(tmp_path)
    (tmp_path / "candle/Data/Masks/Anomaly/001.png").unlink()
    assert _visa_error(tmp_path) == (f"mask {tmp_path}/candle/Data/Masks/Anomaly/001.png of image "
                                     f"{tmp_path}/candle/Data/Images/Anomaly/001.JPG (line 8 of "
                                     f"{tmp_path}/split_csv/1cls.csv) does not exist")


def test_visa_empty_mask_column_for_an_anomaly(tmp_path):
    make_visa(tmp_path)
    _rewrite_csv(tmp_path, lambda rows: [r[:4] + [""] if r[3].endswith("Anomaly/000.JPG") else r for r in rows])
    assert _visa_error(tmp_path).startswith(f"defective test image {tmp_path}/candle/Data/Images/Anomaly/000.JPG "
                                            "has no mask")


def test_visa_mask_without_its_image(tmp_path):
    make_visa(tmp_path)
    shutil.copy(tmp_path / "candle/Data/Masks/Anomaly/000.png", tmp_path / "candle/Data/Masks/Anomaly/077.png")
    assert _visa_error(tmp_path).startswith(f"mask {tmp_path}/candle/Data/Masks/Anomaly/077.png has no image")


def test_visa_mask_of_the_wrong_size(tmp_path):
    make_visa(tmp_path)
    _index_mask(tmp_path / "candle/Data/Masks/Anomaly/000.png", (20, 30), 1, (0, 0, 2, 2))
    assert "is 20x30 but its image" in _visa_error(tmp_path)


@pytest.mark.parametrize("drop, message", [
    ("train", "class 'candle' has no training images"),
    ("anomaly", "class 'candle' has no anomaly test images"),
])
def test_visa_empty_split(tmp_path, drop, message):
    make_visa(tmp_path)
    _rewrite_csv(tmp_path, lambda rows: [r for r in rows if not (r[0] == "candle" and drop in (r[1], r[2]))])
    assert _visa_error(tmp_path).startswith(message)


@pytest.mark.parametrize("edit, message", [
    (lambda rows: [["name", "split"]] + rows[1:], "not VisA's columns object,split,label,image,mask"),
    (lambda rows: rows + [["candle", "val", "normal", "candle/Data/Images/Normal/0000.JPG", ""]], "split 'val'"),
    (lambda rows: rows + [["candle", "test", "normal", "../outside.JPG", ""]], "is not a path inside"),
    (lambda rows: rows + [["candle", "train", "anomaly", "candle/Data/Images/Anomaly/000.JPG", ""]],
     "a training image labelled 'anomaly'"),
])
def test_visa_malformed_csv(tmp_path, edit, message):
    make_visa(tmp_path)
    _rewrite_csv(tmp_path, edit)
    assert message in _visa_error(tmp_path)


def test_visa_missing_csv_and_unknown_class(tmp_path):
    make_visa(tmp_path)
    assert "did you mean 'candle'" in _visa_error(tmp_path, "candel")
    (tmp_path / "split_csv" / "1cls.csv").unlink()
    assert _visa_error(tmp_path).startswith(f"{tmp_path}/split_csv/1cls.csv is missing")


# -- MVTec AD 2 ------------------------------------------------------------------------------------

def test_mvtec_ad2_scores_the_public_test_split(tmp_path):
    make_mvtec_ad2(tmp_path)
    data = MVTecAD2(tmp_path)
    assert data.classes() == ["can"]
    task = data.load("can", 8)
    assert len(task.train) == 3  # validation/good and the private splits are not read
    assert [(s.key, s.label) for s in task.test] == [
        ("can/test_public/bad/000_regular.png", 1), ("can/test_public/bad/001_regular.png", 1),
        ("can/test_public/good/000_regular.png", 0), ("can/test_public/good/001_regular.png", 0)]
    assert [int(s.mask.sum()) for s in task.test] == [4 * 3, 5 * 3, 0, 0]  # boxes x 1..5+i, y 1..4


@pytest.mark.parametrize("split", ["private", "private_mixed"])
def test_mvtec_ad2_private_splits_are_refused(split):
    with pytest.raises(DataError, match=f"test_{split} split has no labels and no masks"):
        MVTecAD2("anywhere", test_split=split)


@pytest.mark.parametrize("damage, message", [
    ("test_public/ground_truth/bad/001_regular_mask.png", "defective test image .*bad/001_regular.png has no mask: "
                                                          "expected .*ground_truth/bad/001_regular_mask.png"),
    ("test_public/bad/001_regular.png", "mask .*001_regular_mask.png has no image"),
    ("test_public/good", "class 'can' has no nominal \\(test_public/good\\) test images"),
    ("train/good", "train/good is missing"),
])
def test_mvtec_ad2_malformed(tmp_path, damage, message):
    make_mvtec_ad2(tmp_path)
    target = tmp_path / "can" / damage
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=message):
        MVTecAD2(tmp_path).check("can", 8)


# -- BTAD and MPDD ---------------------------------------------------------------------------------

def test_btad_reads_ok_ko_and_same_stem_masks(tmp_path):
    make_btad(tmp_path)
    task = BTAD(tmp_path).load("01", 8)
    assert len(task.train) == 3 and all(s.category == "ok" for s in task.train)
    assert [(s.category, s.label, int(s.mask.sum())) for s in task.test] == [
        ("ko", 1, 4 * 6), ("ko", 1, 4 * 7), ("ok", 0, 0), ("ok", 0, 0)]


@pytest.mark.parametrize("damage, message", [
    ("ground_truth/ko/0001.png", "defective test image .*ko/0001.bmp has no mask: expected .*ground_truth/ko/0001.png"),
    ("test/ko/0000.bmp", "mask .*ground_truth/ko/0000.png has no image: expected .*test/ko/0000.bmp;"),
    ("test/ok", "class '01' has no nominal \\(test/ok\\) test images"),
])
def test_btad_malformed(tmp_path, damage, message):
    make_btad(tmp_path)
    target = tmp_path / "01" / damage
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=message):
        BTAD(tmp_path).load("01", 8)


def test_btad_mask_of_the_wrong_size(tmp_path):
    make_btad(tmp_path)
    _index_mask(tmp_path / "01/ground_truth/ko/0000.png", (24, 16), 255, (0, 0, 2, 2))
    with pytest.raises(DataError, match="0000.png is 24x16 but its image .*0000.bmp is 16x24"):
        BTAD(tmp_path).check("01", 8)


def test_mpdd_is_the_mvtec_layout_with_its_classes(tmp_path):
    make_class(tmp_path, "bracket_black")
    data = MPDD(tmp_path)
    assert data.classes() == ["bracket_black"]
    assert len(data.load("bracket_black", 8).test) == 4
    with pytest.raises(DataError, match="did you mean 'bracket_brown'"):
        data.load("bracket_brwn", 8)
    with pytest.raises(DataError, match="MPDD is not downloadable by xadbench: open https://github.com/stepanje/MPDD"):
        MPDD(tmp_path, download=True).fetch(["connector"])


# -- folder with masks -----------------------------------------------------------------------------

def test_folder_masks_splits_good_images_by_seed(tmp_path):
    root = make_folder_masks(tmp_path / "parts")
    data = FolderMasks(root, abnormal="crack,scratch")
    assert data.classes() == ["parts"]
    task = data.load("parts", 8)
    # 20% of 10 good images held out, chosen by numpy's PCG64 with seed 0 (computed independently).
    held = sorted(np.random.default_rng(0).permutation(10)[:2].tolist())
    nominal_test = [s.key for s in task.test if s.label == 0]
    assert nominal_test == [f"good/g{i:02d}.png" for i in held]
    assert len(task.train) == 8 and not set(nominal_test) & {s.key for s in task.train}
    assert [(s.key, s.category, int(s.mask.sum())) for s in task.test if s.label == 1] == [
        ("crack/crack0.png", "crack", 15), ("crack/crack1.png", "crack", 20), ("scratch/scratch0.png", "scratch", 15)]
    other = FolderMasks(root, abnormal="crack,scratch", split_seed="3").load("parts", 8)
    assert [s.key for s in other.test if s.label == 0] != nominal_test


def test_folder_masks_with_a_normal_test_folder(tmp_path):
    root = make_folder_masks(tmp_path / "parts", n_good=3)
    for i in range(2):
        _image(root / "good_test" / f"t{i}.png", (16, 16), seed=40 + i)
    task = FolderMasks(root, abnormal="crack,scratch", normal_test="good_test").load("parts", 8)
    assert len(task.train) == 3 and [s.key for s in task.test if s.label == 0] == ["good_test/t0.png", "good_test/t1.png"]


@pytest.mark.parametrize("damage, message", [
    (lambda r: (r / "mask" / "crack1.png").unlink(), "defective test image .*crack/crack1.png has no mask: expected "
                                                     ".*mask/crack1.png"),
    (lambda r: shutil.copy(r / "mask" / "crack0.png", r / "mask" / "stray.png"), "mask .*mask/stray.png has no image"),
    (lambda r: shutil.copy(r / "mask" / "crack0.png", r / "mask" / "g03.png"),
     "mask .*mask/g03.png has no image: no image named g03"),
    (lambda r: _index_mask(r / "mask" / "crack0.png", (16, 8), 255, (0, 0, 1, 1)), "crack0.png is 16x8 but its image"),
    (lambda r: shutil.rmtree(r / "scratch") or (r / "scratch").mkdir(), "scratch holds no images"),
    (lambda r: [p.unlink() for p in (r / "good").iterdir()], "has no training images"),
    (lambda r: _image(r / "crack" / "crack0.jpg", (16, 16)), "have the same name before the extension"),
])
def test_folder_masks_malformed(tmp_path, damage, message):
    root = make_folder_masks(tmp_path / "parts")
    damage(root)
    with pytest.raises(DataError, match=message) as info:
        FolderMasks(root, abnormal="crack,scratch").check("parts", 8)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("options, message", [
    ({"split_ratio": "1.5"}, "split_ratio='1.5' must be a number from 0 to 1"),
    ({"split_seed": "x"}, "split_seed='x' must be an integer"),
    ({"abnormal": "good"}, "needs distinct folders"),
])
def test_folder_masks_bad_options(tmp_path, options, message):
    with pytest.raises(DataError, match=message):
        FolderMasks(tmp_path, **options)


def test_folder_masks_too_few_good_images(tmp_path):
    root = make_folder_masks(tmp_path / "parts", n_good=1)
    with pytest.raises(DataError, match="holds 1 images: too few to hold out 1"):
        FolderMasks(root, abnormal="crack").load("parts", 8)


@pytest.mark.parametrize("name", ["../other", "01/../01", ".."])
def test_a_class_is_a_folder_name_not_a_path(tmp_path, name):
    make_btad(tmp_path / "btad")
    make_btad(tmp_path / "other", "01")
    with pytest.raises(DataError, match="a class is the name of a folder directly under"):
        BTAD(tmp_path / "btad").check(name, 8)
