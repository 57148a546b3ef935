"""The machinery shared by the data sets whose test anomalies carry pixel masks (MVTec-AD and its
layout's relatives, VisA, a folder with masks): decoding, the decode cache, the checks.

A loader lists a class's files (`MaskedDataset._files`, a `ClassFiles`) with its own layout's
rules; everything after that is here, once: each test image of a defective category must have a
mask, no nominal one may have one (`pair_checks`), a mask must have its image's size, the test
split needs both labels and at least one non-empty mask, and every file must decode. `check`
raises all of these without decoding the images (headers and PNG checksums), so a run checks all
its classes before training any. 16-bit images and masks are scaled by their full range (65535),
not clipped.
"""
from __future__ import annotations

import abc
import difflib
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from PIL import Image

from xadbench import decode_cache
from xadbench.dataset import Dataset
from xadbench.datasets.onevsrest import IMAGE_EXTENSIONS, decode, is_hidden, native_values, unreadable
from xadbench.errors import DataError
from xadbench.types import Sample, Task

EXTENSIONS = "/".join(sorted(IMAGE_EXTENSIONS))


@dataclass(frozen=True)
class ClassFiles:
    """One class's files, as a loader found them.

    root: sample keys are paths relative to it. train: the nominal training images.
    test: (category, image) pairs; `nominal` is the category of the nominal ones.
    masks: {defective test image: its mask file}.
    """

    root: Path
    train: list[Path]
    test: list[tuple[str, Path]]
    masks: dict[Path, Path]
    nominal: str


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_image(path: Path, image_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as uint8 (image_size, image_size, 3), and its original (W, H)."""
    rgb = decode(path, "RGB")  # greyscale, palette and alpha images all become 3 channels
    resized = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8), rgb.size


def _read_mask(mask: Path, image: Path, size: tuple[int, int], nonzero: bool) -> tuple[torch.Tensor, bool]:
    """The mask as a bool tensor (H, W), and whether it had to be thresholded. `nonzero`: every
    non-zero value is a defect (VisA's masks hold class indices). Otherwise values are read at the
    file's own bit depth: 0 and full scale (255, or 65535 for 16 bits) are binary, so is {0, 1}
    (a bool array saved without scaling); anything else is thresholded at half scale."""
    try:
        with Image.open(mask) as im:
            im.load()
            values, full = native_values(im)
    except Exception as exc:  # PIL raises many types for bad files; all mean the same here
        raise unreadable(mask, exc) from None
    if (values.shape[1], values.shape[0]) != size:
        raise DataError(
            f"mask {mask} is {values.shape[1]}x{values.shape[0]} but its image {image} is "
            f"{size[0]}x{size[1]}; a mask must have its image's size (resize it with "
            "nearest-neighbour)"
        )
    present = set(np.unique(values).tolist())
    # {0, 1} is binary too (a bool array saved without scaling); thresholding it would empty it.
    if nonzero or present <= {0, full} or present <= {0, 1}:
        return torch.from_numpy(values > 0), False
    return torch.from_numpy(values >= full / 2), True


def _header_size(path: Path) -> tuple[int, int]:
    """An image's (W, H) from its header, with PIL's integrity check (PNG: every chunk's CRC),
    without decoding the pixels."""
    try:
        with Image.open(path) as im:
            size = im.size
            im.verify()
        return size
    except Exception as exc:  # PIL raises many types for bad files; all mean the same here
        raise unreadable(path, exc) from None


def entries(folder: Path, skipped: list[Path]) -> tuple[list[Path], list[Path]]:
    """(sub-folders, image files) of `folder`, sorted; other visible files go to `skipped`."""
    folders, images = [], []
    for path in sorted(folder.iterdir()):
        if is_hidden(path):
            continue
        if path.is_dir():
            folders.append(path)
        elif path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        else:
            skipped.append(path)
    return folders, images


def images_in(folder: Path, skipped: list[Path]) -> list[Path]:
    """The image files directly in `folder`; sub-folders and other files go to `skipped`."""
    subfolders, images = entries(folder, skipped)
    skipped.extend(subfolders)
    return images


def training_images(folder: Path, class_name: str, skipped: list[Path], layout: str) -> list[Path]:
    """The images in a class's nominal training folder, which must exist and hold some."""
    if not folder.is_dir():
        raise DataError(f"{folder} is missing: class {class_name!r} keeps its nominal training images there "
                        f"(layout: {layout})")
    files = images_in(folder, skipped)
    if not files:
        raise DataError(f"class {class_name!r} has no training images: {folder} holds no {EXTENSIONS} files; "
                        "put its nominal images there")
    return files


def unique_stems(files: Sequence[Path]) -> dict[str, Path]:
    """{file stem: file}; two files of one stem (a.png, a.jpg) are an error, since a mask is found
    by its image's stem."""
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise DataError(f"{by_stem[path.stem]} and {path} have the same name before the extension; "
                            "a mask is matched to its image by that name: rename or delete one")
        by_stem[path.stem] = path
    return by_stem


def pair_checks(class_name: str, files: ClassFiles, where: Path, kinds: tuple[str, str], expected_mask: str) -> None:
    """The rules every layout shares once its masks are paired with images: the test split holds
    both labels (the AUCs need both; `where`: the test folder, `kinds`: how the layout names the
    nominal and the defective images), a nominal image has no mask (it has no defect to annotate),
    and a defective one has one (`expected_mask`: where, with `{image}`, `{stem}` and `{category}`
    filled in for it)."""
    for wanted, has in ((kinds[0], any(c == files.nominal for c, _ in files.test)),
                        (kinds[1], any(c != files.nominal for c, _ in files.test))):
        if not has:
            raise DataError(f"class {class_name!r} has no {wanted} test images in {where}: the AUCs need "
                            "nominal and defective test images")
    for category, path in files.test:
        if category == files.nominal and path in files.masks:
            raise DataError(f"mask {files.masks[path]} annotates a nominal image ({kinds[0]}), which has no "
                            f"defect; delete the mask, or move the image to the {kinds[1]} ones")
        if category != files.nominal and path not in files.masks:
            raise DataError(f"defective test image {path} has no mask: expected "
                            f"{expected_mask.format(image=path, stem=path.stem, category=category)}; add the "
                            "mask (white = defect) or move the image out of the test set")


def warn_skipped_entries(class_name: str, folder: Path, skipped: Sequence[Path]) -> None:
    if skipped:
        shown = ", ".join(p.relative_to(folder).as_posix() for p in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(f"class {class_name!r}: skipped {len(skipped)} non-image entries in {folder}: "
                      f"{shown}{more} (only {EXTENSIONS} files are read)", stacklevel=4)


def unknown_class(class_name: str, folder: Path, found: Sequence[str], known: Sequence[str], root: Path) -> DataError:
    """The error for a class that is not there, with the closest name as a hint."""
    candidates = list(dict.fromkeys([*found, *known]))
    close = difflib.get_close_matches(class_name, candidates, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close and close[0] != class_name else ""
    return DataError(f"class {class_name!r} not found: {folder} is not a folder{hint}; classes found "
                     f"under {root}: {', '.join(found) or 'none'}")


class MaskedDataset(Dataset):
    """A data set whose classes have nominal training images and a test split with pixel masks;
    subclasses list a class's files (`_files`), this class checks, decodes and caches them.

    mask_nonzero: every non-zero mask value is a defect (no threshold at half scale).
    """

    has_masks = True
    mask_nonzero: ClassVar[bool] = False

    @abc.abstractmethod
    def _files(self, class_name: str) -> ClassFiles:
        """Every file of `class_name`, with the layout's rules checked (see `pair_checks`)."""

    @staticmethod
    def _check_masks_not_all_empty(class_name: str, masks: list[torch.Tensor]) -> None:
        if not any(bool(m.any()) for m in masks):
            raise DataError(
                f"class {class_name!r}: every mask of its defective test images is empty (all "
                "black); the pixel AUC needs defect pixels (white = defect)"
            )

    def check(self, class_name: str, image_size: int) -> None:
        """Every error `load` raises, without decoding the images: the layout, every image's
        header and checksums (PIL's verify), and every mask decoded and checked against its
        image's size (masks are small, and their values matter)."""
        files = self._files(class_name)
        for path in files.train:
            _header_size(path)
        read = [_read_mask(files.masks[path], path, _header_size(path), self.mask_nonzero)[0]
                for _, path in files.test if path in files.masks]
        for _, path in files.test:
            if path not in files.masks:
                _header_size(path)
        self._check_masks_not_all_empty(class_name, read)

    def load(self, class_name: str, image_size: int) -> Task:
        """Load one class eagerly, validating every file.

        Images become float32 (3, image_size, image_size) in [0, 1]; masks stay bool at their
        image's original size, all False for nominal test images.
        """
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        image_size = int(image_size)
        files = self._files(class_name)
        root, masks = files.root, files.masks
        test_paths = [path for _, path in files.test]
        sources = [*files.train, *test_paths, *(masks[p] for p in test_paths if p in masks)]
        arrays = decode_cache.cached_arrays(
            self.data_folder or type(self).__name__, root, class_name, image_size, sources,
            lambda: self._decode(files.train, test_paths, masks, image_size))
        # uint8 -> float32 / 255 as one batch; the same values as converting image by image.
        images = torch.from_numpy(
            (np.asarray(arrays["images"], dtype=np.float32) / 255.0).transpose(0, 3, 1, 2).copy())
        bits, shapes = arrays["mask_bits"], arrays["mask_shapes"]
        ends = np.cumsum([(h * w + 7) // 8 for h, w in shapes])
        train = [Sample(images[i], 0, None, _key(path, root), files.nominal) for i, path in enumerate(files.train)]
        test = []
        for j, (category, path) in enumerate(files.test):
            h, w = (int(v) for v in shapes[j])
            mask = np.unpackbits(bits[ends[j] - (h * w + 7) // 8:ends[j]], count=h * w).astype(bool)
            test.append(Sample(images[len(files.train) + j], int(category != files.nominal),
                               torch.from_numpy(mask.reshape(h, w)), _key(path, root), category))
        self._check_masks_not_all_empty(class_name, [s.mask for s in test if s.label == 1])
        repaired = [masks[path] for path, fixed in zip(test_paths, arrays["mask_repaired"]) if fixed]
        if repaired:
            warnings.warn(
                f"class {class_name!r}: {len(repaired)} mask(s) are not binary (values other than "
                f"0 and full scale), e.g. {repaired[0]}; thresholded them at half scale",
                stacklevel=2,
            )
        return Task(train=train, test=test)

    def _decode(self, train_files: list[Path], test_files: list[Path], masks: dict[Path, Path],
                image_size: int) -> dict[str, np.ndarray]:
        """Every image of a class decoded and resized (uint8, training images first), and the test
        masks checked and packed (`np.packbits`, at their image's original size; all False for
        images without one): what the decode cache keeps."""

        def read_test(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
            image, size = _read_image(path, image_size)
            if path in masks:
                mask, repaired = _read_mask(masks[path], path, size, self.mask_nonzero)
                return image, mask.numpy(), repaired
            return image, np.zeros((size[1], size[0]), dtype=bool), False

        # Threads overlap PIL's decoding, which releases the GIL; map keeps the sorted order.
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            train = [image for image, _ in pool.map(lambda p: _read_image(p, image_size), train_files)]
            test = list(pool.map(read_test, test_files))
        return {
            "images": np.stack(train + [image for image, _, _ in test]),
            "mask_bits": np.concatenate([np.packbits(mask.ravel()) for _, mask, _ in test]),
            "mask_shapes": np.array([mask.shape for _, mask, _ in test], dtype=np.int64).reshape(-1, 2),
            "mask_repaired": np.array([repaired for _, _, repaired in test], dtype=bool),
        }
