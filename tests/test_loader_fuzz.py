"""Property-based test of the MVTec-layout loader (hypothesis): random trees with random defects
(missing, extra, mis-sized, corrupt and 16-bit masks and images, stray and hidden files, empty
folders, unreadable files) either load exactly like the clean tree or fail with one DataError
line; `check` (the pass a run makes before training) fails exactly when and as `load` does.
Never any other exception."""
from __future__ import annotations

import errno
import shutil
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tests.test_mvtec import make_class
from xadbench.datasets.mvtec import MVTecAD
from xadbench.errors import XadError

SIZE = (12, 8)  # not square, so a swapped width and height shows
#: Defects that leave the data as it was (the loaded task equals the clean one).
HARMLESS = ("stray_file", "hidden_file", "sixteen_bit_image", "sixteen_bit_mask", "empty_defect_folder",
            "stray_file_in_ground_truth")
#: Defects that must stop the loader with one line.
BREAKING = ("missing_mask", "mask_without_image", "mask_for_good_image", "missized_mask", "corrupt_mask",
            "corrupt_image", "zero_byte_image", "unreadable_image", "unreadable_mask", "no_good_images")


def build(root: Path) -> Path:
    return make_class(root, "widget", n_train=2, n_good=2, defects={"crack": 2, "dent": 1}, size=SIZE, mode="L")


def pick(folder: Path, pattern: str, index: int) -> Path:
    files = sorted(folder.glob(pattern))
    return files[index % len(files)]


def apply(folder: Path, defect: str, index: int) -> Path | None:
    """Damage the class folder; returns a file to make unreadable, if the defect is that."""
    images = "t*/*/*.png"
    masks = "ground_truth/*/*_mask.png"
    if defect == "stray_file":
        (folder / "train" / "good" / "notes.txt").write_text("not an image")
    elif defect == "hidden_file":
        (folder / "test" / "good" / ".DS_Store").write_bytes(b"\0\1")
    elif defect == "stray_file_in_ground_truth":
        (folder / "ground_truth" / "README").write_text("x")
    elif defect == "empty_defect_folder":
        (folder / "test" / "scratch").mkdir(exist_ok=True)
    elif defect in ("sixteen_bit_image", "sixteen_bit_mask"):
        path = pick(folder, images if defect == "sixteen_bit_image" else masks, index)
        values = np.asarray(Image.open(path))
        if values.dtype == np.uint8:
            Image.fromarray(values.astype(np.uint16) * 257).save(path)
    elif defect == "missing_mask":
        pick(folder, masks, index).unlink()
    elif defect == "mask_without_image":
        shutil.copy(pick(folder, masks, index), folder / "ground_truth" / "crack" / "999_mask.png")
    elif defect == "mask_for_good_image":
        (folder / "ground_truth" / "good").mkdir(exist_ok=True)
        shutil.copy(pick(folder, masks, index), folder / "ground_truth" / "good" / "000_mask.png")
    elif defect == "missized_mask":
        path = pick(folder, masks, index)
        Image.fromarray(np.zeros((SIZE[1] + 1, SIZE[0]), np.uint8)).save(path)
    elif defect in ("corrupt_mask", "corrupt_image"):
        path = pick(folder, masks if defect == "corrupt_mask" else images, index)
        path.write_bytes(path.read_bytes()[: max(8, index % 40)])
    elif defect == "zero_byte_image":
        pick(folder, images, index).write_bytes(b"")
    elif defect in ("unreadable_image", "unreadable_mask"):
        return pick(folder, images if defect == "unreadable_image" else masks, index)
    elif defect == "no_good_images":
        shutil.rmtree(folder / "test" / "good")
    return None


def outcome(data: MVTecAD, call: str):
    """("ok", task) or ("error", message); any exception but an XadError propagates."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if call == "check":
                return "ok", data.check("widget", 6)
            return "ok", data.load("widget", 6)
    except XadError as exc:
        return "error", str(exc)


def same_task(a, b) -> bool:
    pairs = list(zip([*a.train, *a.test], [*b.train, *b.test]))
    return len(a.train) == len(b.train) and len(a.test) == len(b.test) and all(
        x.key == y.key and x.label == y.label and np.array_equal(x.image.numpy(), y.image.numpy())
        and ((x.mask is None and y.mask is None) or np.array_equal(x.mask.numpy(), y.mask.numpy()))
        for x, y in pairs)


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(defects=st.lists(st.tuples(st.sampled_from(HARMLESS + BREAKING), st.integers(0, 50)), max_size=3))
def test_random_defects_give_one_line_errors_or_the_clean_result(tmp_path_factory, defects):
    clean = build(tmp_path_factory.mktemp("clean"))
    _, clean_task = outcome(MVTecAD(clean.parent), "load")
    folder = build(tmp_path_factory.mktemp("damaged"))
    denied = []
    for name, index in defects:
        try:
            denied.append(apply(folder, name, index))
        except (OSError, ZeroDivisionError):  # an earlier defect removed or broke this one's target
            pass
    denied = [path for path in denied if path is not None]
    real_open = Image.open

    def open_as_other_user(fp, *args, **kwargs):
        if any(str(fp) == str(path) for path in denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    data = MVTecAD(folder.parent)
    with mock.patch.object(Image, "open", open_as_other_user):
        checked, loaded = outcome(data, "check"), outcome(data, "load")
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
