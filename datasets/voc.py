"""Pascal VOC 2007 horses, for the Clever Hans experiment (paper section 4.3).

Lapuschkin et al. found a watermark in the lower left corner of about a fifth of VOC's horse
images; the paper trains FCDD with horses as the ANOMALOUS class (ImageNet nominal) and shows that
its heatmaps then highlight the watermarks. Here the one class is "horse", and it is anomalous:

- `load("horse", size)`: training = trainval images without a horse (label 0); test = the whole
  2007 test split, label 1 when any object (difficult ones included) is a horse. The nominal side
  is VOC's own non-horse images rather than ImageNet, so the task stands on its own.
- `outlier_exposure(size)`: the trainval horse images (label 1), the paper's anomalies in
  training: pair it with VOC's own nominal images (`--dataset voc --oe voc`) or with ImageNet's.

Images are resized to image_size × image_size WITHOUT cropping (appendix E: "resize all images to
size 224×224 ... and remove the Random Crop step"): a crop could cut off the watermark.

Read by torchvision's `VOCDetection` from `<root>/VOCdevkit/VOC2007/{JPEGImages, Annotations,
ImageSets/Main}`; nothing is fetched unless `download=True` (`--download`), which makes torchvision
download VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import torchvision.datasets as tvd

from xadbench.dataset import Dataset
from xadbench.datasets.onevsrest import check_image_size, file_samples, one_line, resolve_class
from xadbench.errors import DataError
from xadbench.types import Sample, Task

HORSE = "horse"
OTHER = "other"
ARCHIVES = {"trainval": "VOCtrainval_06-Nov-2007.tar", "test": "VOCtest_06-Nov-2007.tar"}
URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2007/"


class PascalVOC(Dataset):
    """Pascal VOC 2007 with "horse" as the anomalous class (see the module docstring).

    classes() is ["horse"]; categories are "horse" and "other".
    """

    display_name = "Pascal VOC"
    profile = "voc"
    data_folder = "voc"
    can_download = True

    def __init__(self, root: str | Path | None = None, download: bool = False):
        super().__init__(root, download)
        self._splits: dict[str, list[tuple[Path, bool]]] = {}

    def classes(self) -> list[str]:
        return [HORSE]

    def _split(self, image_set: str) -> list[tuple[Path, bool]]:
        """(image path, shows a horse) for every image of a split, annotations parsed once."""
        if image_set not in self._splits:
            if self.root is None:
                raise DataError(
                    "Pascal VOC 2007 needs a root folder (--root) holding VOCdevkit/VOC2007; pass "
                    "--download to fetch it there with torchvision"
                )
            split_file = self.root / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / f"{image_set}.txt"
            if not self.download and not split_file.is_file():
                raise DataError(
                    f"Pascal VOC 2007 {image_set} split not found: looked for {split_file}; pass "
                    f"--download to fetch it with torchvision, or unpack {ARCHIVES[image_set]} "
                    f"from {URL} in {self.root}"
                )
            try:
                voc = tvd.VOCDetection(self.root, year="2007", image_set=image_set, download=self.download)
            except Exception as exc:  # torchvision raises RuntimeError, OSError, URLError...
                raise DataError(
                    f"cannot read Pascal VOC 2007 {image_set} under {self.root} ({type(exc).__name__}: "
                    f"{one_line(exc)}); unpack {ARCHIVES[image_set]} from {URL} there"
                ) from None
            self._splits[image_set] = [
                (Path(image), _has_horse(Path(annotation)))
                for image, annotation in zip(voc.images, voc.annotations)
            ]
        return self._splits[image_set]

    def load(self, class_name: str, image_size: int) -> Task:
        """Non-horse trainval images nominal, the 2007 test split scored (horse = 1)."""
        check_image_size(image_size)
        resolve_class(class_name, self.classes(), "Pascal VOC")
        train = [(path, 0, OTHER) for path, horse in self._split("trainval") if not horse]
        test = [(path, int(horse), HORSE if horse else OTHER) for path, horse in self._split("test")]
        return Task(train=file_samples(train, self.root, image_size), test=file_samples(test, self.root, image_size))

    def outlier_exposure(self, image_size: int, exclude: Sequence[str] = ()) -> Sequence[Sample]:
        """The trainval images that show a horse (label 1); none when "horse" is excluded."""
        check_image_size(image_size)
        if any(resolve_class(c, self.classes(), "Pascal VOC") == HORSE for c in exclude):
            return file_samples([], self.root, image_size)
        files = [(path, 1, HORSE) for path, horse in self._split("trainval") if horse]
        return file_samples(files, self.root, image_size)


def _has_horse(annotation: Path) -> bool:
    try:
        tree = ET.parse(annotation)
    except (OSError, ET.ParseError) as exc:
        raise DataError(
            f"cannot read VOC annotation {annotation} ({type(exc).__name__}: {one_line(exc)}); "
            "restore it from the VOC 2007 archive"
        ) from None
    return any((obj.findtext("name") or "").strip() == HORSE for obj in tree.iter("object"))
