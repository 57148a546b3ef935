"""One-vs-rest loaders (paper section 4.1) and the VOC horses (section 4.3), on tiny trees written in
the real on-disk formats, plus the real cifar10_jpg and imagenette folders when present."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
from PIL import Image

from xadbench.datasets.folder import Folder
from xadbench.datasets.imagenet import IMAGENET30, ImageNet22k, ImageNet30
from xadbench.datasets.torchvision_sets import CIFAR10, CIFAR100, EMNISTLetters, FashionMNIST
from xadbench.datasets.voc import PascalVOC
from xadbench.errors import DataError, XadError
from xadbench.registry import datasets
from xadbench.runner import open_dataset
from xadbench.types import LazySamples

FMNIST_NAMES = ["t-shirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
                "bag", "ankle_boot"]
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _labels(samples) -> list[int]:
    return [s.label for s in samples]


# --- torchvision formats ---------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST-style data sets ship them: big-endian header, uint8 payload."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", 0x0800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())
    with gzip.open(f"{path}.gz", "wb") as handle:  # the downloaded archives sit beside them
        handle.write(path.read_bytes())


def _mnist_like(root: Path, prefix: str, names: tuple[str, str], labels: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    images = {}
    for split, name in zip(("train", "test"), names):
        images[split] = rng.integers(0, 256, (len(labels[split]), 28, 28), dtype=np.uint8)
        _write_idx(root / prefix / f"{name}-images-idx3-ubyte", images[split])
        _write_idx(root / prefix / f"{name}-labels-idx1-ubyte", labels[split])
    return images


@pytest.fixture
def fmnist_root(tmp_path):
    labels = {"train": np.repeat(np.arange(10), 3), "test": np.repeat(np.arange(10), 2)}
    images = _mnist_like(tmp_path, "FashionMNIST/raw", ("train", "t10k"), labels)
    return tmp_path, images, labels


def _pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


def _cifar_tree(root: Path, hundred: bool) -> dict[str, np.ndarray]:
    """cifar-10-batches-py (five train batches) or cifar-100-python, 2 train / 1 test image per class."""
    rng = np.random.default_rng(1)
    n = 4 if hundred else 10
    names = ["apple", "aquarium_fish", "baby", "bear"] if hundred else CIFAR10_NAMES
    key = "fine_labels" if hundred else "labels"
    data = {split: rng.integers(0, 256, (n * k, 3072), dtype=np.uint8) for split, k in (("train", 2), ("test", 1))}
    targets = {split: list(np.tile(np.arange(n), len(data[split]) // n)) for split in data}
    if hundred:
        folder = root / "cifar-100-python"
        _pickle(folder / "train", {"data": data["train"], key: targets["train"]})
        _pickle(folder / "test", {"data": data["test"], key: targets["test"]})
        _pickle(folder / "meta", {"fine_label_names": names})
    else:
        folder = root / "cifar-10-batches-py"
        for b in range(5):
            _pickle(folder / f"data_batch_{b + 1}",
                    {"data": data["train"][b * 4:(b + 1) * 4], key: targets["train"][b * 4:(b + 1) * 4]})
        _pickle(folder / "test_batch", {"data": data["test"], key: targets["test"]})
        _pickle(folder / "batches.meta", {"label_names": names})
    return {split: data[split].reshape(-1, 3, 32, 32) for split in data} | {
        f"{split}_labels": np.array(targets[split]) for split in targets}


@pytest.fixture
def skip_md5(monkeypatch):
    """torchvision checks CIFAR's files against the real archives' MD5 sums, which generated
    files cannot match; keep the existence check only."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def test_fmnist_one_vs_rest(fmnist_root):
    root, images, labels = fmnist_root
    data = FashionMNIST(root)
    assert data.profile == "fmnist"
    assert data.classes() == FMNIST_NAMES
    task = data.load("trouser", 28)
    assert len(task.train) == 3 and len(task.test) == 20
    assert {(s.label, s.category) for s in task.train} == {(0, "trouser")}
    assert _labels(task.test) == [int(t != 1) for t in labels["test"]]
    assert [s.category for s in task.test] == [FMNIST_NAMES[t] for t in labels["test"]]
    first = task.train[0]
    assert first.image.dtype == torch.float32 and first.image.shape == (1, 28, 28) and first.mask is None
    assert torch.equal((first.image[0] * 255).round().to(torch.uint8), torch.from_numpy(images["train"][3]))
    assert len({s.key for s in task.test}) == 20
    # Original name, slug and index all name the same class.
    for name in ("Trouser", "1", "trouser"):
        assert [s.key for s in data.load(name, 28).train] == [s.key for s in task.train]
    assert data.load("T-shirt/top", 14).train[0].image.shape == (1, 14, 14)


def test_unknown_class_suggests_a_name(fmnist_root):
    with pytest.raises(DataError, match=r"no class 'trousers' \(did you mean 'trouser'\?\)"):
        FashionMNIST(fmnist_root[0]).load("trousers", 28)


def test_emnist_letters_upright_and_as_outlier_exposure(tmp_path):
    labels = {"train": np.repeat(np.arange(1, 27), 2), "test": np.arange(1, 27)}
    images = _mnist_like(tmp_path, "EMNIST/raw", ("emnist-letters-train", "emnist-letters-test"), labels)
    data = EMNISTLetters(tmp_path)
    assert data.profile == "fmnist"
    assert data.classes() == [chr(c) for c in range(ord("a"), ord("z") + 1)]
    oe = data.outlier_exposure(28, exclude=["a", "c"])
    assert isinstance(oe, LazySamples) and len(oe) == 48
    assert set(_labels(oe)) == {1} and "a" not in {s.category for s in oe}
    # EMNIST stores images transposed; they come back upright.
    assert torch.equal((oe[0].image[0] * 255).round().to(torch.uint8), torch.from_numpy(images["train"][2].T))
    assert data.outlier_exposure(32)[0].image.shape == (1, 32, 32)
    task = data.load("b", 28)
    assert len(task.train) == 2 and sum(_labels(task.test)) == 25


def test_cifar10_one_vs_rest(tmp_path, skip_md5):
    truth = _cifar_tree(tmp_path, hundred=False)
    data = CIFAR10(tmp_path)
    assert data.profile == "cifar10" and data.classes() == CIFAR10_NAMES
    task = data.load("bird", 32)
    assert len(task.train) == 2 and len(task.test) == 10
    assert _labels(task.test) == [int(t != 2) for t in truth["test_labels"]]
    assert [s.category for s in task.test] == [CIFAR10_NAMES[t] for t in truth["test_labels"]]
    image = task.train[0].image
    assert image.shape == (3, 32, 32)
    index = int(np.flatnonzero(truth["train_labels"] == 2)[0])
    assert torch.equal((image * 255).round().to(torch.uint8), torch.from_numpy(truth["train"][index]))
    oe = data.outlier_exposure(32, exclude=["bird"])
    assert len(oe) == 18 and "bird" not in {s.category for s in oe}


def test_cifar100_outlier_exposure_at_fmnist_size(tmp_path, skip_md5):
    _cifar_tree(tmp_path, hundred=True)
    data = CIFAR100(tmp_path)
    assert data.classes() == ["apple", "aquarium_fish", "baby", "bear"]
    oe = data.outlier_exposure(28)
    assert len(oe) == 8 and set(_labels(oe)) == {1}
    assert oe[0].image.shape == (3, 28, 28)  # RGB; the method side greyscales it for Fashion-MNIST
    assert 0.0 <= float(oe[0].image.min()) and float(oe[0].image.max()) <= 1.0


def test_cifar_checksums_are_checked(tmp_path):
    _cifar_tree(tmp_path, hundred=False)
    with pytest.raises(DataError, match="cannot read CIFAR-10 under .*corrupted.*--download") as info:
        CIFAR10(tmp_path).classes()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cls, expected", [
    (FashionMNIST, "FashionMNIST/raw/train-images-idx3-ubyte"),
    (EMNISTLetters, "EMNIST/raw/emnist-letters-train-images-idx3-ubyte"),
    (CIFAR10, "cifar-10-batches-py/data_batch_1"),
    (CIFAR100, "cifar-100-python/train"),
])
def test_missing_torchvision_data_is_one_line(tmp_path, cls, expected):
    with pytest.raises(DataError) as info:
        cls(tmp_path).load("0", 28)
    message = str(info.value)
    assert f"not found: looked for {tmp_path / expected}" in message
    assert "pass --download to fetch it into" in message and "\n" not in message
    with pytest.raises(DataError, match="needs a root folder"):
        cls(None).classes()


# --- folder-per-class trees ------------------------------------------------------------------


def _write_image(path: Path, size: int | tuple[int, int], mode: str = "RGB", value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(value)
    shape = (h, w) if mode == "L" else (h, w, 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _folder_tree(root: Path, size: int = 32, mode: str = "RGB", test: str = "test",
                 counts: dict[str, tuple[int, int]] | None = None) -> Path:
    counts = counts or {"cat": (3, 2), "dog": (2, 2), "fox": (4, 1)}
    for name, (n_train, n_test) in counts.items():
        for i in range(n_train):
            _write_image(root / "train" / name / f"{i}.png", size, mode, i)
        for i in range(n_test):
            _write_image(root / test / name / f"{i}.png", size, mode, 100 + i)
    return root


@pytest.mark.parametrize("size, mode, profile, channels", [
    (28, "L", "fmnist", 1), (28, "RGB", "cifar10", 3), (32, "L", "cifar10", 3), (48, "RGB", "imagenet", 3),
])
def test_folder_profile_follows_the_images(tmp_path, size, mode, profile, channels):
    data = Folder(_folder_tree(tmp_path, size, mode))
    assert data.profile == profile
    assert data.load("cat", 16).test[0].image.shape == (channels, 16, 16)


def test_folder_one_vs_rest(tmp_path):
    data = Folder(_folder_tree(tmp_path, test="val"))
    assert data.classes() == ["cat", "dog", "fox"]
    task = data.load("dog", 32)
    assert len(task.train) == 2 and {(s.label, s.category) for s in task.train} == {(0, "dog")}
    assert [(s.category, s.label) for s in task.test] == [("cat", 1)] * 2 + [("dog", 0)] * 2 + [("fox", 1)]
    assert task.test[0].key == "val/cat/0.png" and task.test[0].mask is None
    image = task.train[0].image
    assert image.dtype == torch.float32 and image.shape == (3, 32, 32)
    assert [s.key for s in data.load("1", 32).train] == [s.key for s in task.train]


def test_folder_outlier_exposure_is_lazy_and_excludes(tmp_path):
    data = Folder(_folder_tree(tmp_path))
    oe = data.outlier_exposure(20, exclude=["cat"])
    assert isinstance(oe, LazySamples) and len(oe) == 6
    assert Counter(s.category for s in oe) == {"dog": 2, "fox": 4} and set(_labels(oe)) == {1}
    assert oe[0].image.shape == (3, 20, 20)
    with pytest.raises(DataError, match="no class 'cow'"):
        data.outlier_exposure(20, exclude=["cow"])


def test_folder_skips_hidden_and_warns_once_about_other_files(tmp_path):
    root = _folder_tree(tmp_path)
    (root / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (root / "train" / "cat" / "notes.txt").write_text("x")
    (root / "test" / "dog" / "labels.csv").write_text("x")
    with pytest.warns(UserWarning, match="skipped 2 entries") as record:
        task = Folder(root).load("cat", 32)
    assert len(record) == 1 and len(task.train) == 3 and len(task.test) == 5


def _emptied(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


@pytest.mark.parametrize("breakage, message", [
    (lambda r: r.rename(r.with_name("elsewhere")), "does not exist"),
    (lambda r: (r / "train").rename(r / "training"), "train is missing"),
    (lambda r: (r / "test").rename(r / "testing"), "neither test/ nor val/"),
    (lambda r: _emptied(r / "train" / "fox"), "class folder .*fox holds no images"),
])
def test_folder_layout_errors_name_the_place(tmp_path, breakage, message):
    root = _folder_tree(tmp_path / "data")
    breakage(root)
    with pytest.raises(DataError, match=message) as info:
        Folder(root).classes()
    assert "\n" not in str(info.value)


def test_folder_corrupt_image_is_named(tmp_path):
    root = _folder_tree(tmp_path)
    (root / "test" / "fox" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    task = Folder(root).load("cat", 32)
    with pytest.raises(DataError, match=r"cannot decode image .*test/fox/0\.png"):
        list(task.test)


def test_folder_nominal_class_needs_test_images(tmp_path):
    root = _folder_tree(tmp_path, counts={"cat": (2, 0), "dog": (2, 2)})
    with pytest.raises(DataError, match=r"test/cat is missing"):
        Folder(root).load("cat", 32)


def test_runner_opens_a_path_as_folder(tmp_path):
    data = open_dataset(str(_folder_tree(tmp_path)), None)
    assert isinstance(data, Folder)
    assert {"fmnist", "cifar10", "cifar100", "emnist", "imagenet30", "imagenet22k", "folder", "voc"} <= set(datasets.names())


# --- ImageNet --------------------------------------------------------------------------------


def test_imagenet30_class_list():
    assert len(IMAGENET30) == 30 and len(set(IMAGENET30.values())) == 30
    assert list(IMAGENET30)[:3] == ["acorn", "airliner", "ambulance"] and list(IMAGENET30)[-1] == "volcano"
    assert IMAGENET30["acorn"] == "n12267677" and IMAGENET30["airliner"] == "n02690373"
    assert IMAGENET30["ambulance"] == "n02701002" and IMAGENET30["rotary_dial_telephone"] == "n03187595"


def test_imagenet30_one_vs_rest(tmp_path):
    for name, wnid in IMAGENET30.items():
        _write_image(tmp_path / "val" / wnid / f"ILSVRC2012_val_{wnid}.JPEG", (40, 30))
    for i in range(3):
        _write_image(tmp_path / "train" / IMAGENET30["acorn"] / f"{IMAGENET30['acorn']}_{i}.JPEG", (50, 37), value=i)
    data = ImageNet30(tmp_path)
    assert data.profile == "imagenet" and len(data.classes()) == 30
    for name in ("acorn", "Acorn", "n12267677", "0"):
        task = data.load(name, 24)
        assert len(task.train) == 3 and len(task.test) == 30
    assert {s.category for s in task.train} == {"acorn"} and sum(_labels(task.test)) == 29
    assert [s.category for s in task.test if s.label == 0] == ["acorn"]
    assert task.test[0].image.shape == (3, 24, 24)
    with pytest.raises(DataError, match=r"train/n03452741 is missing"):
        data.load("Grand piano", 24)


def test_imagenet30_missing_data_is_one_line(tmp_path):
    with pytest.raises(DataError, match="ImageNet-1k not found .*cannot be downloaded automatically"):
        ImageNet30(tmp_path, download=True).load("acorn", 64)
    _write_image(tmp_path / "train" / IMAGENET30["acorn"] / "a.JPEG", 8)
    with pytest.raises(DataError, match=r"val/n12267677 is missing"):
        ImageNet30(tmp_path).load("acorn", 64)


def test_imagenet22k_outlier_exposure_exclusions(tmp_path):
    root = tmp_path / "imagenet22k"
    for wnid, n in (("n00000001", 2), ("n00000002", 1), ("n09999999", 1), (IMAGENET30["acorn"], 1)):
        for i in range(n):
            _write_image(root / wnid / f"{wnid}_{i}.JPEG", 20, value=i)
    data = ImageNet22k(root)
    with pytest.warns(UserWarning, match="only the 30 ImageNet-30 classes are removed"):
        oe = data.outlier_exposure(16)
    assert len(oe) == 4  # the ImageNet-30 (test) class is always out
    listing = tmp_path / "imagenet1k.txt"
    listing.write_text("# ImageNet-1k\nn00000002 some synset, name\n\n")
    imagenet1k_train = tmp_path / "imagenet1k" / "train"
    (imagenet1k_train / "n09999999").mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oe = data.outlier_exposure(16, exclude=[str(listing), str(imagenet1k_train)])
    assert [s.category for s in oe] == ["n00000001", "n00000001"] and set(_labels(oe)) == {1}
    assert oe[0].image.shape == (3, 16, 16) and oe[0].key == "n00000001/n00000001_0.JPEG"
    assert len(data.outlier_exposure(16, exclude=["n00000001"])) == 2
    with pytest.raises(DataError, match="neither a WordNet id"):
        data.outlier_exposure(16, exclude=["acorns"])
    with pytest.raises(XadError, match="only as Outlier Exposure"):
        data.load("n00000001", 16)


# --- Pascal VOC ------------------------------------------------------------------------------


def _voc_tree(root: Path, splits: dict[str, dict[str, list[tuple[str, int]]]]) -> Path:
    """VOCdevkit/VOC2007 with JPEGImages, Annotations (XML) and ImageSets/Main/<split>.txt;
    every image is 80×40 with a red block in the lower left corner (where VOC's watermarks sit)."""
    voc = root / "VOCdevkit" / "VOC2007"
    for split, images in splits.items():
        (voc / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{name}\n" for name in images))
        for name, objects in images.items():
            pixels = np.full((40, 80, 3), 128, dtype=np.uint8)
            pixels[25:, :15] = (255, 0, 0)
            (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(voc / "JPEGImages" / f"{name}.jpg", quality=95)
            xml = "".join(
                f"<object><name>{cls}</name><pose>Left</pose><truncated>0</truncated>"
                f"<difficult>{difficult}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax>"
                f"<ymax>9</ymax></bndbox></object>"
                for cls, difficult in objects
            )
            (voc / "Annotations").mkdir(parents=True, exist_ok=True)
            (voc / "Annotations" / f"{name}.xml").write_text(
                f"<annotation><folder>VOC2007</folder><filename>{name}.jpg</filename><size><width>80</width>"
                f"<height>40</height><depth>3</depth></size><segmented>0</segmented>{xml}</annotation>"
            )
    return root


VOC_SPLITS = {
    "trainval": {"000001": [("horse", 0), ("person", 0)], "000002": [("dog", 0)],
                 "000003": [("car", 0), ("chair", 1)], "000004": [("horse", 1)]},
    "test": {"000005": [("horse", 0)], "000006": [("cat", 0)], "000007": [("person", 0), ("bottle", 0)]},
}


def test_voc_horses_are_anomalous(tmp_path):
    data = PascalVOC(_voc_tree(tmp_path, VOC_SPLITS))
    assert data.profile == "voc" and data.classes() == ["horse"]
    task = data.load("horse", 24)
    assert [s.key for s in task.train] == ["VOCdevkit/VOC2007/JPEGImages/000002.jpg",
                                           "VOCdevkit/VOC2007/JPEGImages/000003.jpg"]
    assert set(_labels(task.train)) == {0}
    assert [(s.label, s.category) for s in task.test] == [(1, "horse"), (0, "other"), (0, "other")]
    image = task.test[0].image
    assert image.shape == (3, 24, 24)
    # Resized, not cropped: the lower-left block (the watermark's place) is still in the corner.
    assert image[0, -1, 0] > 0.9 and image[1, -1, 0] < 0.1 and image[0, 0, -1] < 0.6
    oe = data.outlier_exposure(24)
    assert [s.key[-10:] for s in oe] == ["000001.jpg", "000004.jpg"] and set(_labels(oe)) == {1}
    assert len(data.outlier_exposure(24, exclude=["horse"])) == 0
    with pytest.raises(DataError, match="no class 'cat'"):
        data.load("cat", 24)


def test_voc_missing_split_is_one_line(tmp_path):
    _voc_tree(tmp_path, {"trainval": VOC_SPLITS["trainval"]})
    with pytest.raises(DataError) as info:
        PascalVOC(tmp_path).load("horse", 24)
    message = str(info.value)
    assert "Pascal VOC 2007 test split not found: looked for" in message and "ImageSets/Main/test.txt" in message
    assert "--download" in message and "VOCtest_06-Nov-2007.tar" in message and "\n" not in message


# --- real data (../shared/data) --------------------------------------------------------------


@pytest.mark.realdata
def test_real_cifar10_jpg(shared_data):
    data = open_dataset(str(shared_data / "cifar10_jpg"), None)
    assert data.profile == "cifar10" and data.classes() == CIFAR10_NAMES
    for name in data.classes():
        assert len(data.load(name, 32).train) == 500
    task = data.load("airplane", 32)
    assert Counter((s.category, s.label) for s in task.test) == {
        (c, int(c != "airplane")): 200 for c in CIFAR10_NAMES}
    assert task.train[0].image.shape == (3, 32, 32)
    assert len(data.outlier_exposure(32, exclude=["airplane"])) == 4500


@pytest.mark.realdata
def test_real_imagenette(shared_data):
    data = open_dataset(str(shared_data / "imagenette"), None)
    assert data.profile == "imagenet" and len(data.classes()) == 10
    for name in data.classes():
        assert len(data.load(name, 64).train) == 100
    task = data.load("n01440764", 64)
    assert Counter(s.label for s in task.test) == {0: 50, 1: 450}
    assert task.test[0].image.shape == (3, 64, 64)
