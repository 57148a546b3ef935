"""A folder of good images, folders of defect images and a folder of their masks, as an
inspection engineer keeps them (anomalib's `Folder` convention); one class, named after root::

    <root>/<normal>/*.png|jpg         nominal images
    <root>/<abnormal>/*.png|jpg       defective images; several folders, comma-separated, each a
                                      defect category
    <root>/<mask>/<stem>.png|...      one mask per defective image, matched by file stem
    <root>/<normal_test>/             optional: the nominal test images

Without a normal-test folder, a seeded random `split_ratio` of the normal images (at least one)
becomes the nominal test images and the rest the training images; the same seed gives the same
split on every machine (numpy's PCG64). Every rule of the masked data sets holds
(`xadbench.datasets.masked`): a defective image without a mask, a mask whose stem names no
defective image, a mask of the wrong size, an empty folder are errors naming the file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from xadbench.datasets.masked import (
    ClassFiles, MaskedDataset, images_in, pair_checks, training_images, unique_stems, warn_skipped_entries,
)
from xadbench.errors import DataError

LAYOUT = "<root>/<normal>/, <root>/<abnormal>/ (comma-separated folders), <root>/<mask>/<image stem>.png"


def _number(name: str, text: object, kind: type, low: float, high: float) -> float:
    """A numeric option given as text on the command line, checked to lie in [low, high]."""
    try:
        value = kind(text)
    except (TypeError, ValueError):
        value = None
    if value is None or not low <= value <= high:
        raise DataError(f"folder-masks option {name}={text!r} must be a{'n integer' if kind is int else ' number'} "
                        f"from {low:g} to {high:g}")
    return value


class FolderMasks(MaskedDataset):
    """Good, defect and mask folders under one root (see the module docstring).

    normal, abnormal, mask, normal_test: the folders' names under root (abnormal: several,
        comma-separated); normal_test None: split the normal images.
    split_ratio: the share of normal images held out as nominal test images (without normal_test).
    split_seed: the seed of that split.
    """

    display_name = "a folder with masks"
    profile = "mvtec"

    def __init__(self, root: str | Path | None = None, download: bool = False, normal: str = "good",
                 abnormal: str = "defect", mask: str = "mask", normal_test: str | None = None,
                 split_ratio: float | str = 0.2, split_seed: int | str = 0):
        super().__init__(root, download)
        if download:
            raise DataError("the folder-masks data set reads local files only: --download does not apply")
        self.normal, self.mask, self.normal_test = normal, mask, normal_test
        self.abnormal = [name.strip() for name in str(abnormal).split(",") if name.strip()]
        self.split_ratio = _number("split_ratio", split_ratio, float, 0.0, 1.0)
        self.split_seed = int(_number("split_seed", split_seed, int, 0, 2**32 - 1))
        named = [normal, mask, *self.abnormal, *([normal_test] if normal_test else [])]
        if not self.abnormal or len(set(named)) < len(named):
            raise DataError(f"folder-masks needs distinct folders for normal ({normal}), abnormal ({abnormal}), mask "
                            f"({mask}) and normal_test ({normal_test}) images")

    def _data_root(self) -> Path:
        if self.root is None:
            raise DataError(f"the folder-masks data set needs --root <folder holding {LAYOUT}>")
        if not self.root.is_dir():
            raise DataError(f"data set root {self.root} does not exist or is not a folder; expected {LAYOUT}")
        return self.root

    def classes(self) -> list[str]:
        """One class: the root folder's name."""
        return [self._data_root().resolve().name]

    def _split(self, normal: list[Path]) -> tuple[list[Path], list[Path]]:
        """(training, test) images: the normal-test folder's, or a seeded split of `normal`."""
        root = self._data_root()
        if self.normal_test is not None:
            return normal, training_images(root / self.normal_test, "nominal test", [], LAYOUT)
        held_out = max(1, round(self.split_ratio * len(normal)))
        if held_out >= len(normal):
            raise DataError(f"{root / self.normal} holds {len(normal)} images: too few to hold out {held_out} as "
                            "nominal test images and train on the rest; add images, lower split_ratio or name a "
                            "normal_test folder")
        order = np.random.default_rng(self.split_seed).permutation(len(normal))
        test = set(order[:held_out].tolist())
        return [p for i, p in enumerate(normal) if i not in test], [p for i, p in enumerate(normal) if i in test]

    def _files(self, class_name: str) -> ClassFiles:
        root = self._data_root()
        if class_name != self.classes()[0]:
            raise DataError(f"the folder-masks data set {root} has one class, {self.classes()[0]!r}, not {class_name!r}")
        skipped: list[Path] = []
        train, nominal_test = self._split(training_images(root / self.normal, class_name, skipped, LAYOUT))
        test = [(self.normal, path) for path in nominal_test]
        for name in self.abnormal:
            folder = root / name
            if not folder.is_dir():
                raise DataError(f"{folder} is missing: the abnormal option names it ({LAYOUT})")
            images = images_in(folder, skipped)
            if not images:
                raise DataError(f"{folder} holds no images: each abnormal folder holds defective images")
            test += [(name, path) for path in images]
        mask_dir = root / self.mask
        if not mask_dir.is_dir():
            raise DataError(f"{mask_dir} is missing: the mask option names the folder of the defective images' masks")
        by_stem = unique_stems([path for _, path in test])
        masks = {}
        for mask in images_in(mask_dir, skipped):
            image = by_stem.get(mask.stem)
            if image is None:
                raise DataError(f"mask {mask} has no image: no image named {mask.stem}.* in "
                                f"{', '.join(self.abnormal)}; add the image or delete the mask")
            masks[image] = mask
        files = ClassFiles(root, train, test, masks, self.normal)
        pair_checks(class_name, files, root, (f"nominal ({self.normal_test or self.normal})",
                                              f"defective ({', '.join(self.abnormal)})"), f"{mask_dir}/{{stem}}.png")
        warn_skipped_entries(class_name, root, skipped)
        return files
