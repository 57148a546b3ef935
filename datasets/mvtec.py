"""MVTec-AD (Bergmann et al., CVPR 2019), and any data set kept in its folder layout.

Layout under `root`, one folder per class (product)::

    <class>/train/good/*.png                    nominal training images
    <class>/test/<defect>/*.png                 test images; <defect> is "good" for nominal ones
    <class>/ground_truth/<defect>/<name>_mask.png   one binary mask per defective test image

Any folder in this layout counts as a class, so users can point the loader at their own products.
Every file of a class is decoded and checked when the class is first loaded at an image size; the
decoded, resized arrays are kept by `xadbench.decode_cache` and reused while the files are
unchanged (same paths, sizes and modification times). `check` does the same
checks without decoding the images (headers and PNG checksums), so a run checks all its classes
before training any. Rules beyond the layout: a class needs nominal and defective test images (the
AUCs need both labels) and at least one non-empty mask; a mask for a nominal (test/good) image is
an error, since a nominal image has no defect to annotate; 16-bit images and masks are scaled by
their full range (65535), not clipped.
"""
from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xadbench import decode_cache
from xadbench.dataset import Dataset
from xadbench.errors import DataError
from xadbench.datasets.onevsrest import IMAGE_EXTENSIONS, decode, is_hidden, native_values, unreadable
from xadbench.types import Sample, Task

KNOWN_CLASSES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
    "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)
URL = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
LAYOUT = (
    "<root>/<class>/train/good/*.png, <root>/<class>/test/<defect>/*.png (nominal ones in "
    "test/good), <root>/<class>/ground_truth/<defect>/<name>_mask.png"
)
NOMINAL = "good"
MASK_SUFFIX = "_mask"


def _key(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _read_image(path: Path, image_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image as uint8 (image_size, image_size, 3), and its original (W, H)."""
    rgb = decode(path, "RGB")  # greyscale, palette and alpha images all become 3 channels
    resized = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8), rgb.size


def _read_mask(mask: Path, image: Path, size: tuple[int, int]) -> tuple[torch.Tensor, bool]:
    """The mask as a bool tensor (H, W), and whether it had to be thresholded. Values are read at
    the file's own bit depth: 0 and full scale (255, or 65535 for 16 bits) are binary, so is
    {0, 1} (a bool array saved without scaling); anything else is thresholded at half scale."""
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
    if present <= {0, full} or present <= {0, 1}:
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


class MVTecAD(Dataset):
    """MVTec-AD, or any folder in its layout (see the module docstring).

    root: the folder holding the class folders. download: fetch the MVTec-AD classes that are
        asked for (`fetch`, and `load` of a class) and missing under root, from MVTec's
        archives (`xadbench.datasets.mvtec_archives`).
    """

    display_name = "MVTec-AD"
    profile = "mvtec"
    has_masks = True
    data_folder = "mvtec_ad"
    can_download = True
    #: Names offered as suggestions when a requested class is not found.
    known_classes: tuple[str, ...] = KNOWN_CLASSES

    def _data_root(self) -> Path:
        """The root folder, checked to exist."""
        if self.root is None:
            raise DataError(
                f"{type(self).__name__} needs root=<folder holding the class folders> "
                f"({LAYOUT}); get MVTec-AD from {URL}"
            )
        if not self.root.is_dir():
            raise DataError(
                f"data set root {self.root} does not exist or is not a folder; pass root=<folder "
                f"holding the class folders> ({LAYOUT}); get MVTec-AD from {URL} or pass --download"
            )
        return self.root

    @staticmethod
    def _class_folders(root: Path) -> list[str]:
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and not is_hidden(p)
            and ((p / "train").is_dir() or (p / "test").is_dir())
        )

    def classes(self) -> list[str]:
        """The class folders under root that follow the layout (have `train/` or `test/`); with
        download, the MVTec-AD classes too."""
        if self.download:
            found = self._class_folders(self.root) if self.root is not None and self.root.is_dir() else []
            return sorted({*found, *KNOWN_CLASSES})
        return self._class_folders(self._data_root())

    def fetch(self, classes: Sequence[str]) -> None:
        """With download, fetch the MVTec-AD classes among `classes` that root lacks."""
        if self.download:
            from xadbench.datasets.mvtec_archives import fetch

            if self.root is None:
                self._data_root()  # raises: "needs root"
            fetch(self.root, classes)

    def _files(self, class_name: str) -> tuple[Path, list[Path], list[tuple[str, Path]], dict[Path, Path]]:
        """(root, training images, (defect, test image) pairs, {test image: mask}) of a class,
        with every layout rule checked; one warning for non-image entries."""
        self.fetch([class_name])
        root = self._data_root()
        folder = self._class_folder(root, class_name)
        skipped: list[Path] = []

        train_dir = folder / "train" / NOMINAL
        if not train_dir.is_dir():
            raise DataError(
                f"{train_dir} is missing: a class keeps its nominal training images in "
                f"<class>/train/good (layout: {LAYOUT})"
            )
        train_files = self._images_in(train_dir, skipped)
        if not train_files:
            raise DataError(
                f"class {class_name!r} has no training images: {train_dir} holds no "
                f"{'/'.join(sorted(IMAGE_EXTENSIONS))} files; put its nominal images there"
            )
        test_files = self._test_files(folder, skipped)
        for wanted, has in (("nominal (test/good)", any(d == NOMINAL for d, _ in test_files)),
                            ("defective (test/<defect>)", any(d != NOMINAL for d, _ in test_files))):
            if not has:
                raise DataError(
                    f"class {class_name!r} has no {wanted} test images in {folder / 'test'}: the "
                    "AUCs need nominal and defective test images"
                )
        masks = self._mask_files(folder, test_files, skipped)
        if skipped:
            shown = ", ".join(p.relative_to(folder).as_posix() for p in skipped[:3])
            more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
            warnings.warn(
                f"class {class_name!r}: skipped {len(skipped)} non-image entries in {folder}: "
                f"{shown}{more} (only {'/'.join(sorted(IMAGE_EXTENSIONS))} files are read)",
                stacklevel=3,
            )
        return root, train_files, test_files, masks

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
        _, train_files, test_files, masks = self._files(class_name)
        for path in train_files:
            _header_size(path)
        read = [_read_mask(masks[path], path, _header_size(path))[0] for _, path in test_files if path in masks]
        for _, path in test_files:
            if path not in masks:
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
        root, train_files, test_files, masks = self._files(class_name)
        test_paths = [path for _, path in test_files]
        sources = [*train_files, *test_paths, *(masks[p] for p in test_paths if p in masks)]
        arrays = decode_cache.cached_arrays(
            self.data_folder or type(self).__name__, root, class_name, image_size, sources,
            lambda: self._decode(train_files, test_paths, masks, image_size))
        # uint8 -> float32 / 255 as one batch; the same values as converting image by image.
        images = torch.from_numpy(
            (np.asarray(arrays["images"], dtype=np.float32) / 255.0).transpose(0, 3, 1, 2).copy())
        bits, shapes = arrays["mask_bits"], arrays["mask_shapes"]
        ends = np.cumsum([(h * w + 7) // 8 for h, w in shapes])
        train = [Sample(images[i], 0, None, _key(path, root), NOMINAL) for i, path in enumerate(train_files)]
        test = []
        for j, (defect, path) in enumerate(test_files):
            h, w = (int(v) for v in shapes[j])
            mask = np.unpackbits(bits[ends[j] - (h * w + 7) // 8:ends[j]], count=h * w).astype(bool)
            test.append(Sample(images[len(train_files) + j], int(defect != NOMINAL),
                               torch.from_numpy(mask.reshape(h, w)), _key(path, root), defect))
        self._check_masks_not_all_empty(class_name, [s.mask for s in test if s.label == 1])
        repaired = [masks[path] for path, fixed in zip(test_paths, arrays["mask_repaired"]) if fixed]
        if repaired:
            warnings.warn(
                f"class {class_name!r}: {len(repaired)} mask(s) are not binary (values other than "
                f"0 and full scale), e.g. {repaired[0]}; thresholded them at half scale",
                stacklevel=2,
            )
        return Task(train=train, test=test)

    @staticmethod
    def _decode(train_files: list[Path], test_files: list[Path], masks: dict[Path, Path],
                image_size: int) -> dict[str, np.ndarray]:
        """Every image of a class decoded and resized (uint8, training images first), and the test
        masks checked and packed (`np.packbits`, at their image's original size; all False for
        images without one): what the decode cache keeps."""

        def read_test(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
            image, size = _read_image(path, image_size)
            if path in masks:
                mask, repaired = _read_mask(masks[path], path, size)
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

    def _class_folder(self, root: Path, class_name: str) -> Path:
        folder = root / class_name
        if class_name and folder.is_dir():
            return folder
        found = self._class_folders(root)
        candidates = list(dict.fromkeys([*found, *self.known_classes]))
        close = difflib.get_close_matches(class_name, candidates, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close and close[0] != class_name else ""
        raise DataError(
            f"class {class_name!r} not found: {folder} is not a folder{hint}; classes found "
            f"under {root}: {', '.join(found) or 'none'}"
        )

    @staticmethod
    def _entries(folder: Path, skipped: list[Path]) -> tuple[list[Path], list[Path]]:
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

    def _images_in(self, folder: Path, skipped: list[Path]) -> list[Path]:
        subfolders, images = self._entries(folder, skipped)
        skipped.extend(subfolders)
        return images

    def _test_files(self, folder: Path, skipped: list[Path]) -> list[tuple[str, Path]]:
        test_dir = folder / "test"
        if not test_dir.is_dir():
            raise DataError(
                f"{test_dir} is missing: a class keeps its test images in <class>/test/<defect> "
                f"(layout: {LAYOUT})"
            )
        defect_dirs, loose = self._entries(test_dir, skipped)
        skipped.extend(loose)
        files = [(d.name, p) for d in defect_dirs for p in self._images_in(d, skipped)]
        if not files:
            raise DataError(
                f"{test_dir} holds no test images: put them in test/<defect>/ (nominal ones in "
                "test/good/)"
            )
        return files

    def _mask_files(
        self, folder: Path, test_files: list[tuple[str, Path]], skipped: list[Path]
    ) -> dict[Path, Path]:
        """Map each test image to its mask file, checking that masks and images pair up."""
        by_stem = {(defect, path.stem): path for defect, path in test_files}
        masks: dict[Path, Path] = {}
        gt_dir = folder / "ground_truth"
        if gt_dir.is_dir():
            defect_dirs, loose = self._entries(gt_dir, skipped)
            skipped.extend(loose)
            for d in defect_dirs:
                for mask in self._images_in(d, skipped):
                    if not mask.stem.endswith(MASK_SUFFIX):
                        raise DataError(
                            f"ground-truth file {mask} is not named <image name>{MASK_SUFFIX}.png;"
                            " rename it after the test image it annotates"
                        )
                    stem = mask.stem[: -len(MASK_SUFFIX)]
                    image = by_stem.get((d.name, stem))
                    if d.name == NOMINAL:
                        raise DataError(
                            f"mask {mask} annotates a nominal image (test/{NOMINAL}), which has no "
                            f"defect; delete the mask, or move the image to test/<defect>/"
                        )
                    if image is None:
                        raise DataError(
                            f"mask {mask} has no image: expected {folder / 'test' / d.name}/"
                            f"{stem}.png; add the image or delete the mask"
                        )
                    masks[image] = mask
        for defect, path in test_files:
            if defect != NOMINAL and path not in masks:
                raise DataError(
                    f"defective test image {path} has no mask: expected "
                    f"{gt_dir / defect / (path.stem + MASK_SUFFIX)}.png; add the mask (white = "
                    "defect) or move the image out of the test set"
                )
        return masks
