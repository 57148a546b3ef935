"""Property-based test of the masked-data-set loaders (hypothesis): random trees with random
defects (missing, extra, mis-sized, corrupt and 16-bit masks and images, stray and hidden files,
empty folders, unreadable files) either load exactly like the clean tree or fail with one
DataError line; `check` (the pass a run makes before training) fails exactly when and as `load`
does. Never any other exception. Each layout (MVTec-AD, VisA, MVTec AD 2, BTAD, a folder with
masks) is a `Layout`: how to build its clean replica and how to make its layout-specific
defects."""
from __future__ import annotations

import csv
import errno
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.test_industrial_datasets import make_btad, make_folder_masks, make_mvtec_ad2, make_visa
from tests.test_mvtec import make_class
from xadbench.dataset import Dataset
from xadbench.datasets.btad import BTAD
from xadbench.datasets.folder_masks import FolderMasks
from xadbench.datasets.mvtec import MVTecAD
from xadbench.datasets.mvtec_ad2 import MVTecAD2
from xadbench.datasets.visa import VisA
from xadbench.errors import XadError

SIZE = (12, 8)  # not square, so a swapped width and height shows
#: Defects that leave the data as it was (the loaded task equals the clean one).
HARMLESS = ("stray_file", "hidden_file", "sixteen_bit_image", "sixteen_bit_mask", "empty_defect_folder",
            "stray_file_in_ground_truth")
#: Defects that must stop the loader with one line.
BREAKING = ("missing_mask", "mask_without_image", "mask_for_good_image", "missized_mask", "corrupt_mask",
            "corrupt_image", "zero_byte_image", "unreadable_image", "unreadable_mask", "no_good_images")


@dataclass(frozen=True)
class Layout:
    """A layout's clean replica and its own defects.

    build: writes the clean tree under a folder, returns the data set root. open: the loader on
    a root. class_name: the class loaded. images, masks: globs (under root) of the image and
    mask files. stray: the folder (under root) for stray and hidden files. own: the defects whose
    making depends on the layout, {name: make(root, index)}; a HARMLESS defect missing from it
    and from the generic ones does not apply to this layout (it is skipped).
    """

    build: Callable[[Path], Path]
    open: Callable[[Path], Dataset]
    class_name: str
    images: str
    masks: str
    stray: str
    own: dict[str, Callable[[Path, int], None]]
    sixteen_bit_images: bool = True


def pick(folder: Path, pattern: str, index: int) -> Path:
    files = sorted(folder.glob(pattern))
    return files[index % len(files)]


def _copy_a_mask(pattern: str, to: str) -> Callable[[Path, int], None]:
    def make(root: Path, index: int) -> None:
        (root / to).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pick(root, pattern, index), root / to)
    return make


def _remove(relative: str) -> Callable[[Path, int], None]:
    return lambda root, index: shutil.rmtree(root / relative)


def _edit_visa_csv(edit: Callable[[list[list[str]]], list[list[str]]]) -> Callable[[Path, int], None]:
    def make(root: Path, index: int) -> None:
        path = root / "split_csv" / "1cls.csv"
        rows = edit(list(csv.reader(path.open())))
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    return make


def _first_anomaly_mask(rows: list[list[str]]) -> str:
    return next(r[4] for r in rows if r[2] == "anomaly")


MVTEC_MASKS = "widget/ground_truth/*/*_mask.png"
LAYOUTS = {
    "mvtec": Layout(
        lambda root: make_class(root, "widget", n_train=2, n_good=2, defects={"crack": 2, "dent": 1}, size=SIZE,
                                mode="L").parent,
        MVTecAD, "widget", "widget/t*/*/*.png", MVTEC_MASKS, "widget/train/good",
        {"stray_file_in_ground_truth": lambda root, i: (root / "widget/ground_truth/README").write_text("x"),
         "empty_defect_folder": lambda root, i: (root / "widget/test/scratch").mkdir(exist_ok=True),
         "mask_without_image": _copy_a_mask(MVTEC_MASKS, "widget/ground_truth/crack/999_mask.png"),
         "mask_for_good_image": _copy_a_mask(MVTEC_MASKS, "widget/ground_truth/good/000_mask.png"),
         "no_good_images": _remove("widget/test/good")}),
    "visa": Layout(
        lambda root: make_visa(root, sizes={"candle": SIZE}, n_train=2, n_normal=2, n_anomaly=2),
        VisA, "candle", "candle/Data/Images/*/*.JPG", "candle/Data/Masks/Anomaly/*.png", "candle/Data/Images/Normal",
        {"mask_without_image": _copy_a_mask("candle/Data/Masks/Anomaly/*.png", "candle/Data/Masks/Anomaly/999.png"),
         "mask_for_good_image": _edit_visa_csv(lambda rows: [
             r[:4] + [_first_anomaly_mask(rows)] if r[1:3] == ["test", "normal"] else r for r in rows]),
         "no_good_images": _edit_visa_csv(lambda rows: [r for r in rows if r[1:3] != ["test", "normal"]])},
        sixteen_bit_images=False),  # JPEG holds 8 bits
    "mvtec-ad2": Layout(
        lambda root: make_mvtec_ad2(root, size=SIZE),
        MVTecAD2, "can", "can/t*/*/*.png", "can/test_public/ground_truth/bad/*.png", "can/train/good",
        {"empty_defect_folder": lambda root, i: (root / "can/test_public/scratch").mkdir(exist_ok=True),
         "mask_without_image": _copy_a_mask("can/test_public/ground_truth/bad/*.png",
                                            "can/test_public/ground_truth/bad/999_mask.png"),
         "mask_for_good_image": _copy_a_mask("can/test_public/ground_truth/bad/*.png",
                                             "can/test_public/ground_truth/good/000_regular_mask.png"),
         "no_good_images": _remove("can/test_public/good")},
        sixteen_bit_images=False),  # an RGB replica
    "btad": Layout(
        lambda root: make_btad(root, size=SIZE),
        BTAD, "01", "01/t*/*/*.bmp", "01/ground_truth/ko/*.png", "01/train/ok",
        {"mask_without_image": _copy_a_mask("01/ground_truth/ko/*.png", "01/ground_truth/ko/0999.png"),
         "mask_for_good_image": _copy_a_mask("01/ground_truth/ko/*.png", "01/ground_truth/ok/0000.png"),
         "no_good_images": _remove("01/test/ok")},
        sixteen_bit_images=False),  # BMP holds 8 bits
    "folder-masks": Layout(
        lambda root: make_folder_masks(root / "parts", n_good=6, size=SIZE).parent,
        lambda root: FolderMasks(root / "parts", abnormal="crack,scratch", split_ratio="0.3"), "parts",
        "parts/[gcs]*/*.png", "parts/mask/*.png", "parts/good",
        {"mask_without_image": _copy_a_mask("parts/mask/*.png", "parts/mask/999.png"),
         "mask_for_good_image": _copy_a_mask("parts/mask/*.png", "parts/mask/g00.png"),
         "no_good_images": lambda root, i: [p.unlink() for p in (root / "parts/good").iterdir()]},
        sixteen_bit_images=False),  # an RGB replica
}


def apply(layout: Layout, root: Path, defect: str, index: int) -> Path | None:
    """Damage the tree; returns a file to make unreadable, if the defect is that."""
    if defect in layout.own:
        layout.own[defect](root, index)
    elif defect == "stray_file":
        (root / layout.stray / "notes.txt").write_text("not an image")
    elif defect == "hidden_file":
        (root / layout.stray / ".DS_Store").write_bytes(b"\0\1")
    elif defect == "sixteen_bit_image" and layout.sixteen_bit_images or defect == "sixteen_bit_mask":
        path = pick(root, layout.images if defect == "sixteen_bit_image" else layout.masks, index)
        values = np.asarray(Image.open(path))
        if values.dtype == np.uint8:
            Image.fromarray(values.astype(np.uint16) * 257).save(path)
    elif defect == "missing_mask":
        pick(root, layout.masks, index).unlink()
    elif defect == "missized_mask":
        path = pick(root, layout.masks, index)
        Image.fromarray(np.zeros((SIZE[1] + 1, SIZE[0]), np.uint8)).save(path)
    elif defect in ("corrupt_mask", "corrupt_image"):
        path = pick(root, layout.masks if defect == "corrupt_mask" else layout.images, index)
        path.write_bytes(path.read_bytes()[: max(8, index % 40)])
    elif defect == "zero_byte_image":
        pick(root, layout.images, index).write_bytes(b"")
    elif defect in ("unreadable_image", "unreadable_mask"):
        return pick(root, layout.images if defect == "unreadable_image" else layout.masks, index)
    return None


def outcome(data: Dataset, class_name: str, call: str):
    """("ok", task) or ("error", message); any exception but an XadError propagates."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if call == "check":
                return "ok", data.check(class_name, 6)
            return "ok", data.load(class_name, 6)
    except XadError as exc:
        return "error", str(exc)


def same_task(a, b) -> bool:
    pairs = list(zip([*a.train, *a.test], [*b.train, *b.test]))
    return len(a.train) == len(b.train) and len(a.test) == len(b.test) and all(
        x.key == y.key and x.label == y.label and np.array_equal(x.image.numpy(), y.image.numpy())
        and ((x.mask is None and y.mask is None) or np.array_equal(x.mask.numpy(), y.mask.numpy()))
        for x, y in pairs)


def fuzz(layout: Layout, tmp_path_factory, defects) -> None:
    clean = layout.build(tmp_path_factory.mktemp("clean"))
    _, clean_task = outcome(layout.open(clean), layout.class_name, "load")
    root = layout.build(tmp_path_factory.mktemp("damaged"))
    denied = []
    for name, index in defects:
        try:
            denied.append(apply(layout, root, name, index))
        except (OSError, ZeroDivisionError, StopIteration):  # an earlier defect removed or broke this one's target
            pass
    denied = [path for path in denied if path is not None]
    real_open = Image.open

    def open_as_other_user(fp, *args, **kwargs):
        if any(str(fp) == str(path) for path in denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    with mock.patch.object(Image, "open", open_as_other_user):
        checked = outcome(layout.open(root), layout.class_name, "check")
        loaded = outcome(layout.open(root), layout.class_name, "load")
    breaking = [name for name, _ in defects if name in BREAKING]
    # A file deleted or replaced by another defect can hide a breaking one; what remains must hold.
    if checked[0] == "error":
        assert loaded == checked, (defects, checked, loaded)
        assert "\n" not in checked[1] and checked[1]
        assert breaking, (defects, checked)
        if any(name.startswith("unreadable") for name in breaking) and "permission denied" in checked[1]:
            assert checked[1].startswith("cannot read ") and checked[1].endswith(": permission denied")
    else:
        assert loaded[0] == "ok", (defects, loaded)
        assert not breaking, (defects, "loaded without an error")
        assert same_task(loaded[1], clean_task), defects


DEFECTS = st.lists(st.tuples(st.sampled_from(HARMLESS + BREAKING), st.integers(0, 50)), max_size=3)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(defects=DEFECTS)
def test_random_defects_give_one_line_errors_or_the_clean_result(tmp_path_factory, defects):
    fuzz(LAYOUTS["mvtec"], tmp_path_factory, defects)


@pytest.mark.parametrize("name", ["visa", "mvtec-ad2", "btad", "folder-masks"])
def test_random_defects_in_the_other_layouts(tmp_path_factory, name):
    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(defects=DEFECTS)
    def run(defects):
        fuzz(LAYOUTS[name], tmp_path_factory, defects)

    run()
