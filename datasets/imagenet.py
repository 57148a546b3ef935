"""ImageNet-30 one-vs-rest and ImageNet-22k Outlier Exposure (paper section 4.1, appendix E/F).

imagenet30: the 30 ImageNet-1k classes of the paper's Table 8 (chosen by Hendrycks et al., 2019a),
one-vs-rest: a class's ImageNet-1k train images are nominal, and the val images of all 30 classes
are scored (label 0 for the nominal class). `imagenet30.csv` maps the table's names to WordNet ids.
Read from an ImageNet-1k tree as torchvision's ImageFolder expects it::

    <root>/train/<wnid>/*.JPEG
    <root>/val/<wnid>/*.JPEG      (the 50 val images per class, sorted into class folders)

imagenet22k: the paper's Outlier Exposure for ImageNet, "ImageNet22k with ImageNet1k classes
removed" (section 4.1), from a tree `<root>/<wnid>/*.JPEG`. The 1000 ImageNet-1k wnids are not
shipped (torchvision has no offline list of them), so the user names what to remove through
`exclude` (`--oe-exclude`): wnids, a text file with one wnid per line (first word of a line, `#`
starts a comment; e.g. ImageNet's LOC_synset_mapping.txt), or a folder whose subfolders are wnids
(e.g. the ImageNet-1k `train/` folder itself). The 30 ImageNet-30 classes are always removed,
since they are the test classes.

Images are resized straight to image_size × image_size. The paper resizes to 256 and then crops
224 (appendix E); cropping is left to the method. ImageNet cannot be downloaded automatically
(its licence is accepted on image-net.org), so `download=True` changes nothing. Trees of this size
are listed once and decoded on access.
"""
from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

from xadbench.dataset import Dataset
from xadbench.datasets.onevsrest import (
    check_image_size, file_samples, is_hidden, list_images, resolve_class, slug, warn_skipped,
)
from xadbench.errors import DataError, XadError
from xadbench.types import Sample, Task

URL = "https://image-net.org"
LAYOUT = "<root>/train/<wnid>/*.JPEG and <root>/val/<wnid>/*.JPEG (val sorted into class folders)"
WNID = re.compile(r"n\d{8}")


def _read_classes() -> dict[str, str]:
    """{readable class name: wnid} for ImageNet-30, in the order of the paper's Table 8."""
    with Path(__file__).with_name("imagenet30.csv").open(newline="") as handle:
        return {slug(row["name"]): row["wnid"] for row in csv.DictReader(handle)}


IMAGENET30 = _read_classes()


class ImageNet30(Dataset):
    """The 30 ImageNet-1k classes of the paper's Table 8, one-vs-rest (see the module docstring).

    Class names are Table 8's in snake case ("acorn", "american_alligator", ...); `load` also
    accepts a class's wnid or its index in `classes()`.
    """

    display_name = "ImageNet-30"
    profile = "imagenet"
    data_folder = "imagenet"

    def classes(self) -> list[str]:
        return list(IMAGENET30)

    def _data_root(self) -> Path:
        if self.root is None or not (self.root / "train").is_dir():
            where = f"{self.root / 'train'} is missing" if self.root is not None else "no root given"
            raise DataError(
                f"ImageNet-1k not found ({where}): imagenet30 reads {LAYOUT}; ImageNet cannot be "
                f"downloaded automatically: get ILSVRC2012 from {URL} and pass its folder as --root"
            )
        return self.root

    def _images(self, folder: Path, skipped: list[Path]) -> list[Path]:
        if not folder.is_dir():
            raise DataError(f"{folder} is missing: imagenet30 reads {LAYOUT}")
        images = list_images(folder, skipped)
        if not images:
            raise DataError(f"{folder} holds no images: imagenet30 reads {LAYOUT}")
        return images

    def load(self, class_name: str, image_size: int) -> Task:
        check_image_size(image_size)
        root = self._data_root()
        by_wnid = {wnid: name for name, wnid in IMAGENET30.items()}
        nominal = by_wnid.get(class_name) or resolve_class(class_name, self.classes(), "imagenet30")
        skipped: list[Path] = []
        train = [(p, 0, nominal) for p in self._images(root / "train" / IMAGENET30[nominal], skipped)]
        test = [
            (p, int(name != nominal), name)
            for name, wnid in IMAGENET30.items()
            for p in self._images(root / "val" / wnid, skipped)
        ]
        warn_skipped(skipped, root)
        return Task(train=file_samples(train, root, image_size), test=file_samples(test, root, image_size))


def _excluded_wnids(entries: Sequence[str]) -> set[str]:
    """The wnids named by `exclude` entries: wnids, files listing wnids, or folders of wnid folders."""
    wnids: set[str] = set()
    for entry in entries:
        path = Path(entry)
        if path.is_dir():
            wnids.update(p.name for p in path.iterdir() if p.is_dir() and WNID.fullmatch(p.name))
        elif path.is_file():
            for number, line in enumerate(path.read_text().splitlines(), 1):
                words = line.split("#")[0].split()
                if not words:
                    continue
                if not WNID.fullmatch(words[0]):
                    raise DataError(
                        f"{path} line {number}: {words[0]!r} is not a WordNet id (n + 8 digits); "
                        "an exclusion file lists one wnid per line"
                    )
                wnids.add(words[0])
        elif WNID.fullmatch(entry):
            wnids.add(entry)
        else:
            raise DataError(
                f"imagenet22k exclusion {entry!r} is neither a WordNet id (n + 8 digits), nor a file "
                "listing wnids, nor a folder of wnid folders"
            )
    return wnids


class ImageNet22k(Dataset):
    """ImageNet-22k as Outlier Exposure only (see the module docstring); `load` refuses."""

    profile = "imagenet"
    data_folder = "imagenet22k"

    def _data_root(self) -> Path:
        if self.root is None or not self.root.is_dir():
            raise DataError(
                f"ImageNet-22k not found ({self.root or 'no root given'} is not a folder): "
                f"imagenet22k reads <root>/<wnid>/*.JPEG (the per-synset archives unpacked); it "
                f"cannot be downloaded automatically: get it from {URL}"
            )
        return self.root

    def classes(self) -> list[str]:
        """The wnid folders under root."""
        root = self._data_root()
        return sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p))

    def load(self, class_name: str, image_size: int) -> Task:
        raise XadError(
            "imagenet22k serves only as Outlier Exposure (paper section 4.1): use it as --oe "
            "imagenet22k with --dataset imagenet30"
        )

    def outlier_exposure(self, image_size: int, exclude: Sequence[str] = ()) -> Sequence[Sample]:
        """All images of all wnid folders except the excluded and the ImageNet-30 ones, label 1."""
        check_image_size(image_size)
        if not exclude:
            warnings.warn(
                "imagenet22k: only the 30 ImageNet-30 classes are removed; the paper removes all "
                "ImageNet-1k classes: pass --oe-exclude <file listing their wnids, or your "
                "ImageNet-1k train/ folder>",
                stacklevel=2,
            )
        dropped = _excluded_wnids(exclude) | set(IMAGENET30.values())
        root = self._data_root()
        skipped: list[Path] = []
        files = [(p, 1, w) for w in self.classes() if w not in dropped for p in list_images(root / w, skipped)]
        warn_skipped(skipped, root)
        return file_samples(files, root, image_size)
