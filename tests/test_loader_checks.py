"""Loader correctness (16-bit files, nominal masks, one-label test sets, unreadable files) and
`MVTecAD.check`, the cheap pass a run makes over its classes before training: it raises exactly
the errors `load` raises."""
from __future__ import annotations

import errno

import numpy as np
import pytest
from PIL import Image

from tests.test_mvtec import make_class
from xadbench.datasets import onevsrest
from xadbench.datasets.mvtec import MVTecAD
from xadbench.errors import DataError


def _gradient16(size=(40, 24)) -> np.ndarray:
    """A 16-bit ramp over the whole range, not square, so width and height cannot be swapped."""
    w, h = size
    return np.round(np.linspace(0, 65535, w * h)).astype(np.uint16).reshape(h, w)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_greyscale_decodes_by_its_full_range(tmp_path, suffix):
    values = _gradient16()
    path = tmp_path / f"g16{suffix}"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")  # really a 16-bit file, as PIL reads it
    decoded = np.asarray(onevsrest.decode(path, "L"))
    # Independent expectation: each 16-bit value v maps to round(v / 65535 * 255).
    expected = np.round(values.astype(np.float64) / 65535 * 255).astype(np.uint8)
    assert np.array_equal(decoded, expected)
    rgb = np.asarray(onevsrest.decode(path, "RGB"))
    assert all(np.array_equal(rgb[..., c], expected) for c in range(3))


def test_float_tiff_decodes_as_zero_to_one(tmp_path):
    values = np.linspace(0, 1, 24 * 40, dtype=np.float32).reshape(24, 40)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    expected = np.round(values.astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(np.asarray(onevsrest.decode(tmp_path / "f.tif", "L")), expected)


def test_a_16_bit_class_loads_like_its_8_bit_twin(tmp_path):
    """The same class saved as 8-bit and as 16-bit greyscale (v * 257, the exact widening) with
    16-bit masks (0 / 65535) loads to identical images and masks."""
    for name in ("eight", "sixteen"):
        make_class(tmp_path, name, mode="L", size=(40, 24))
    for path in (tmp_path / "sixteen").rglob("*.png"):
        Image.fromarray(np.asarray(Image.open(path)).astype(np.uint16) * 257).save(path)
        assert Image.open(path).mode.startswith("I;16")
    data = MVTecAD(tmp_path)
    eight, sixteen = data.load("eight", 16), data.load("sixteen", 16)
    for a, b in zip([*eight.train, *eight.test], [*sixteen.train, *sixteen.test]):
        assert np.array_equal(a.image.numpy(), b.image.numpy())
        assert (a.mask is None and b.mask is None) or np.array_equal(a.mask.numpy(), b.mask.numpy())
    assert any(s.mask.any() for s in sixteen.test)


def _errors(data: MVTecAD, name: str) -> tuple[str, str]:
    """The messages of check and of load for a class (both must raise)."""
    with pytest.raises(DataError) as by_check:
        data.check(name, 16)
    with pytest.raises(DataError) as by_load:
        data.load(name, 16)
    return str(by_check.value), str(by_load.value)


def test_a_mask_for_a_nominal_image_is_an_error(tmp_path):
    folder = make_class(tmp_path)
    (folder / "ground_truth" / "good").mkdir()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(folder / "ground_truth" / "good" / "000_mask.png")
    check, load = _errors(MVTecAD(tmp_path), "widget")
    assert check == load and "annotates a nominal image (test/good)" in check and "000_mask.png" in check


@pytest.mark.parametrize("remove, wanted", [("good", "nominal (test/good)"), ("crack", "defective (test/<defect>)")])
def test_a_test_set_without_both_labels_names_the_class(tmp_path, remove, wanted):
    import shutil

    folder = make_class(tmp_path)
    shutil.rmtree(folder / "test" / remove)
    if remove == "crack":
        shutil.rmtree(folder / "ground_truth")
    check, load = _errors(MVTecAD(tmp_path), "widget")
    assert check == load and f"class 'widget' has no {wanted} test images" in check


def test_all_black_masks_name_the_class(tmp_path):
    folder = make_class(tmp_path)
    for path in (folder / "ground_truth").rglob("*.png"):
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(path)
    check, load = _errors(MVTecAD(tmp_path), "widget")
    assert check == load and "class 'widget': every mask of its defective test images is empty" in check


@pytest.mark.parametrize("target", ["train/good/001.png", "test/crack/000.png", "ground_truth/crack/001_mask.png"])
def test_a_truncated_file_is_found_by_check_without_decoding(tmp_path, target):
    folder = make_class(tmp_path)
    path = folder / target
    path.write_bytes(path.read_bytes()[:-40])
    check, load = _errors(MVTecAD(tmp_path), "widget")
    assert str(path) in check and "corrupt or truncated" in check and str(path) in load


@pytest.mark.parametrize("target", ["train/good/001.png", "test/crack/000.png", "ground_truth/crack/001_mask.png"])
def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch, target):
    """Tests run as root, where chmod 000 does not stop reads, so PIL's open is made to raise the
    PermissionError the OS raises for a user without read permission (errno EACCES)."""
    folder = make_class(tmp_path)
    denied = folder / target
    real_open = Image.open

    def open_as_other_user(fp, *args, **kwargs):
        if str(fp) == str(denied):
            raise PermissionError(errno.EACCES, "Permission denied", str(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_as_other_user)
    check, load = _errors(MVTecAD(tmp_path), "widget")
    assert check == load == f"cannot read {denied}: permission denied"


def test_check_accepts_a_clean_class_and_decodes_no_image(tmp_path, monkeypatch):
    make_class(tmp_path, defects={"crack": 2, "scratch": 1})
    decoded = []
    real_load = Image.Image.load

    def counting_load(self):
        decoded.append(getattr(self, "filename", ""))
        return real_load(self)

    monkeypatch.setattr(Image.Image, "load", counting_load)
    MVTecAD(tmp_path).check("widget", 16)
    # Only masks are decoded (their values matter); images get header and checksum checks.
    files = [name for name in decoded if name]  # "" are in-memory conversions, not files
    assert files and all(name.endswith("_mask.png") for name in files)
