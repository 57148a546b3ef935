"""VisA, the Visual Anomaly data set (Zou et al., ECCV 2022): 12 classes, in the layout of its
official archive::

    <root>/split_csv/1cls.csv                          the one-class split: object,split,label,image,mask
    <root>/<class>/Data/Images/{Normal,Anomaly}/*.JPG  the images (sizes differ between classes)
    <root>/<class>/Data/Masks/Anomaly/*.png             one mask per anomalous image, same stem

The split CSV decides everything: rows of split "train" are the nominal training images, rows of
split "test" the scored ones, label "normal" or "anomaly", paths relative to root. A mask's
defect pixels are its non-zero ones (VisA's masks hold small class indices, not 255). Beyond
the checks every masked data set has (`xadbench.datasets.masked`), a row naming a file that does
not exist, a malformed row, and a mask in Data/Masks/Anomaly without an image of its stem in
Data/Images/Anomaly are errors naming the file.
"""
from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from xadbench.datasets.archives import VISA_CLASSES
from xadbench.datasets.masked import ClassFiles, MaskedDataset, entries, pair_checks, unique_stems, unknown_class
from xadbench.errors import DataError

SPLIT_CSV = "split_csv/1cls.csv"
COLUMNS = ["object", "split", "label", "image", "mask"]
NOMINAL, ANOMALY = "normal", "anomaly"
PAGE = "https://github.com/amazon-science/spot-diff"
LAYOUT = f"<root>/{SPLIT_CSV} and <root>/<class>/Data/{{Images,Masks}}/..., as VisA's archive unpacks"


class VisA(MaskedDataset):
    """VisA in its official archive layout (see the module docstring).

    root: the folder the archive unpacked into. download: fetch the archive when split_csv/ or a
        class asked for is missing (`xadbench.datasets.archives`).
    """

    display_name = "VisA"
    profile = "mvtec"
    data_folder = "visa"
    can_download = True
    mask_nonzero = True

    def __init__(self, root: str | Path | None = None, download: bool = False):
        super().__init__(root, download)
        self._rows: dict[str, list[tuple[int, str, str, Path, Path | None]]] | None = None

    def _data_root(self) -> Path:
        if self.root is None:
            raise DataError(f"VisA needs --root <folder holding {SPLIT_CSV}> ({LAYOUT}); get VisA from {PAGE}")
        if not self.root.is_dir():
            raise DataError(f"data set root {self.root} does not exist or is not a folder; pass --root <folder "
                            f"holding {SPLIT_CSV}> ({LAYOUT}), or pass --download")
        return self.root

    def _path(self, root: Path, csv_path: Path, line: int, text: str) -> Path:
        """A path from the CSV, which must stay under root."""
        relative = PurePosixPath(text)
        if relative.is_absolute() or ".." in relative.parts or not text:
            raise DataError(f"{csv_path} line {line}: {text!r} is not a path inside the data set root")
        return root.joinpath(*relative.parts)

    def _split(self) -> dict[str, list[tuple[int, str, str, Path, Path | None]]]:
        """{class: [(CSV line, split, label, image, mask or None)]}, read once and checked row by row."""
        if self._rows is None:
            root = self._data_root()
            csv_path = root / SPLIT_CSV
            if not csv_path.is_file():
                raise DataError(f"{csv_path} is missing: VisA's split comes with its archive ({LAYOUT})")
            rows: dict[str, list[tuple[int, str, str, Path, Path | None]]] = {}
            with csv_path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                header = next(reader, None)
                if header != COLUMNS:
                    raise DataError(f"{csv_path} starts with {header}, not VisA's columns {','.join(COLUMNS)}")
                for line, row in enumerate(reader, start=2):
                    if not row:
                        continue
                    if len(row) != len(COLUMNS):
                        raise DataError(f"{csv_path} line {line} has {len(row)} fields, not {len(COLUMNS)}")
                    name, split, label, image, mask = row
                    if split not in ("train", "test") or label not in (NOMINAL, ANOMALY):
                        raise DataError(f"{csv_path} line {line}: split {split!r} and label {label!r}; expected "
                                        f"split train or test, label {NOMINAL} or {ANOMALY}")
                    if split == "train" and label != NOMINAL:
                        raise DataError(f"{csv_path} line {line}: a training image labelled {label!r}; training "
                                        "images are nominal")
                    image_path = self._path(root, csv_path, line, image)
                    if not image_path.is_file():
                        raise DataError(f"image {image_path} (line {line} of {csv_path}) does not exist")
                    mask_path = self._path(root, csv_path, line, mask) if mask else None
                    if mask_path is not None and not mask_path.is_file():
                        raise DataError(f"mask {mask_path} of image {image_path} (line {line} of {csv_path}) does "
                                        "not exist")
                    rows.setdefault(name, []).append((line, split, label, image_path, mask_path))
            if not rows:
                raise DataError(f"{csv_path} lists no images")
            self._rows = rows
        return self._rows

    def classes(self) -> list[str]:
        """The classes the split CSV lists; with download and no data yet, VisA's 12."""
        if self.download and (self.root is None or not (self.root / SPLIT_CSV).is_file()):
            return list(VISA_CLASSES)
        return sorted(self._split())

    def fetch(self, classes: Sequence[str]) -> None:
        """With download, fetch VisA's archive when split_csv/ or a class among `classes` is missing."""
        if self.download:
            from xadbench.datasets.archives import fetch_missing

            if self.root is None:
                self._data_root()  # raises: "needs root"
            fetch_missing("visa", self.root, ["split_csv", *classes])

    def _files(self, class_name: str) -> ClassFiles:
        self.fetch([class_name])
        root = self._data_root()
        rows = self._split()
        if class_name not in rows:
            raise unknown_class(class_name, root / class_name, sorted(rows), VISA_CLASSES, root)
        train = [image for _, split, _, image, _ in rows[class_name] if split == "train"]
        if not train:
            raise DataError(f"class {class_name!r} has no training images: {root / SPLIT_CSV} lists no row of "
                            "split train for it")
        test = [(label, image) for _, split, label, image, _ in rows[class_name] if split == "test"]
        masks = {image: mask for _, split, _, image, mask in rows[class_name] if split == "test" and mask}
        files = ClassFiles(root, train, test, masks, NOMINAL)
        pair_checks(class_name, files, root / SPLIT_CSV, (NOMINAL, ANOMALY),
                    f"a mask in the mask column of {root / SPLIT_CSV} for {{image}}")
        self._check_mask_folder(root / class_name / "Data")
        return files

    @staticmethod
    def _check_mask_folder(data: Path) -> None:
        """Every mask in Data/Masks/Anomaly has an anomalous image of its stem."""
        masks_dir, images_dir = data / "Masks" / ANOMALY.capitalize(), data / "Images" / ANOMALY.capitalize()
        if not masks_dir.is_dir():
            return
        skipped: list[Path] = []
        images = unique_stems(entries(images_dir, skipped)[1]) if images_dir.is_dir() else {}
        for mask in entries(masks_dir, skipped)[1]:
            if mask.stem not in images:
                raise DataError(f"mask {mask} has no image: expected {images_dir}/{mask.stem}.JPG; add the image "
                                "or delete the mask")
