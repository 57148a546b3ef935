"""MVTec-AD (Bergmann et al., CVPR 2019), and any data set kept in its folder layout.

Layout under `root`, one folder per class (product)::

    <class>/train/good/*.png                    nominal training images
    <class>/test/<defect>/*.png                 test images; <defect> is "good" for nominal ones
    <class>/ground_truth/<defect>/<name>_mask.png   one binary mask per defective test image

Any folder in this layout counts as a class, so users can point the loader at their own products.
MPDD, BTAD and MVTec AD 2 keep variants of it: `MVTecLayout`'s class attributes name the folders
and the mask suffix, and their loaders set them. Every file of a class is decoded and checked
when the class is first loaded at an image size (`xadbench.datasets.masked`, which also holds the
rules every masked data set shares); the decoded, resized arrays are kept by
`xadbench.decode_cache` and reused while the files are unchanged (same paths, sizes and
modification times).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from xadbench.datasets.masked import (
    ClassFiles, MaskedDataset, entries, images_in, pair_checks, training_images, unknown_class,
    warn_skipped_entries,
)
from xadbench.datasets.onevsrest import is_hidden
from xadbench.errors import DataError

KNOWN_CLASSES = (
    "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill",
    "screw", "tile", "toothbrush", "transistor", "wood", "zipper",
)


class MVTecLayout(MaskedDataset):
    """A data set in MVTec-AD's folder layout, or a variant of it named by the class attributes.

    url: where to get the data set (for messages, beside its `display_name`).
    nominal: the folder of nominal images (under train/ and the test folder).
    test_folder: the test split's folder in a class; ground_truth: the masks' folder in a class.
    mask_suffix: a mask is named <image stem><mask_suffix>.<any image extension>.
    known_classes: the published classes, offered as suggestions when a class is not found.
    """

    profile = "mvtec"
    url: ClassVar[str] = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
    nominal: ClassVar[str] = "good"
    test_folder: ClassVar[str] = "test"
    ground_truth: ClassVar[str] = "ground_truth"
    mask_suffix: ClassVar[str] = "_mask"
    known_classes: ClassVar[tuple[str, ...]] = ()

    @property
    def layout(self) -> str:
        test, gt, good = self.test_folder, self.ground_truth, self.nominal
        return (f"<root>/<class>/train/{good}/*.png, <root>/<class>/{test}/<defect>/*.png (nominal ones in "
                f"{test}/{good}), <root>/<class>/{gt}/<defect>/<name>{self.mask_suffix}.png")

    def _data_root(self) -> Path:
        """The root folder, checked to exist."""
        get = f"get {self.display_name} from {self.url}"
        if self.root is None:
            raise DataError(f"{type(self).__name__} needs --root <folder holding the class folders> "
                            f"({self.layout}); {get}")
        if not self.root.is_dir():
            offer = " or pass --download" if self.can_download else ""
            raise DataError(f"data set root {self.root} does not exist or is not a folder; pass --root <folder "
                            f"holding the class folders> ({self.layout}); {get}{offer}")
        return self.root

    def _class_folders(self, root: Path) -> list[str]:
        return sorted(
            p.name
            for p in root.iterdir()
            if p.is_dir() and not is_hidden(p)
            and ((p / "train").is_dir() or (p / self.test_folder).is_dir())
        )

    def classes(self) -> list[str]:
        """The class folders under root that follow the layout (have `train/` or the test folder);
        with download, the published classes too."""
        if self.download:
            found = self._class_folders(self.root) if self.root is not None and self.root.is_dir() else []
            return sorted({*found, *self.known_classes})
        return self._class_folders(self._data_root())

    def _files(self, class_name: str) -> ClassFiles:
        """A class's files with every layout rule checked; one warning for non-image entries."""
        self.fetch([class_name])
        root = self._data_root()
        folder = root / class_name
        if class_name in ("", ".", "..") or Path(class_name).name != class_name or "\\" in class_name:
            raise DataError(f"--classes {class_name!r}: a class is the name of a folder directly under {root}, not a "
                            f"path; classes found there: {', '.join(self._class_folders(root)) or 'none'}")
        if not folder.is_dir():
            raise unknown_class(class_name, folder, self._class_folders(root), self.known_classes, root)
        skipped: list[Path] = []
        train = training_images(folder / "train" / self.nominal, class_name, skipped, self.layout)
        test = self._test_files(folder, skipped)
        files = ClassFiles(root, train, test, self._mask_files(folder, test, skipped), self.nominal)
        good = self.nominal
        pair_checks(class_name, files, folder / self.test_folder,
                    (f"nominal ({self.test_folder}/{good})", f"defective ({self.test_folder}/<defect>)"),
                    f"{folder / self.ground_truth}/{{category}}/{{stem}}{self.mask_suffix}.png")
        warn_skipped_entries(class_name, folder, skipped)
        return files

    def _test_files(self, folder: Path, skipped: list[Path]) -> list[tuple[str, Path]]:
        test_dir = folder / self.test_folder
        if not test_dir.is_dir():
            raise DataError(
                f"{test_dir} is missing: a class keeps its test images in <class>/{self.test_folder}/<defect> "
                f"(layout: {self.layout})"
            )
        defect_dirs, loose = entries(test_dir, skipped)
        skipped.extend(loose)
        # MVTec AD 2 keeps its masks inside the test folder: that folder is not a defect.
        files = [(d.name, p) for d in defect_dirs if d != folder / self.ground_truth for p in images_in(d, skipped)]
        if not files:
            raise DataError(
                f"{test_dir} holds no test images: put them in {self.test_folder}/<defect>/ (nominal ones in "
                f"{self.test_folder}/{self.nominal}/)"
            )
        return files

    def _mask_files(
        self, folder: Path, test_files: list[tuple[str, Path]], skipped: list[Path]
    ) -> dict[Path, Path]:
        """Map each test image to its mask file: a mask must be named after a test image of its
        defect folder and may not annotate a nominal one."""
        by_stem = {(defect, path.stem): path for defect, path in test_files}
        masks: dict[Path, Path] = {}
        gt_dir = folder / self.ground_truth
        if not gt_dir.is_dir():
            return masks
        defect_dirs, loose = entries(gt_dir, skipped)
        skipped.extend(loose)
        for d in defect_dirs:
            for mask in images_in(d, skipped):
                suffix = self.mask_suffix
                if not mask.stem.endswith(suffix):
                    raise DataError(
                        f"ground-truth file {mask} is not named <image name>{suffix}.png;"
                        " rename it after the test image it annotates"
                    )
                stem = mask.stem[: len(mask.stem) - len(suffix)]
                if d.name == self.nominal:
                    raise DataError(
                        f"mask {mask} annotates a nominal image ({self.test_folder}/{self.nominal}), which has "
                        f"no defect; delete the mask, or move the image to {self.test_folder}/<defect>/"
                    )
                image = by_stem.get((d.name, stem))
                if image is None:
                    # Named with the extension its defect's images have (BTAD's are .bmp).
                    extension = next((p.suffix for c, p in test_files if c == d.name), ".png")
                    raise DataError(
                        f"mask {mask} has no image: expected {folder / self.test_folder / d.name}/"
                        f"{stem}{extension}; add the image or delete the mask"
                    )
                masks[image] = mask
        return masks


class MVTecAD(MVTecLayout):
    """MVTec-AD, or any folder in its layout (see the module docstring).

    root: the folder holding the class folders. download: fetch the MVTec-AD classes that are
        asked for (`fetch`, and `load` of a class) and missing under root, from MVTec's
        archives (`xadbench.datasets.mvtec_archives`).
    """

    display_name = "MVTec-AD"
    data_folder = "mvtec_ad"
    can_download = True
    known_classes = KNOWN_CLASSES

    def fetch(self, classes: Sequence[str]) -> None:
        """With download, fetch the MVTec-AD classes among `classes` that root lacks."""
        if self.download:
            from xadbench.datasets.mvtec_archives import fetch

            if self.root is None:
                self._data_root()  # raises: "needs root"
            fetch(self.root, classes)
