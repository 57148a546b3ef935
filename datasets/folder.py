"""Any folder-per-class image tree as a one-vs-rest data set (the protocol of paper section 4.1).

Layout under `root`::

    train/<class>/*.png|jpg|...     training images, one folder per class
    test/<class>/*.png|jpg|...      the scored split; val/<class>/ is read when there is no test/

Class c is nominal: training sees its train images (label 0); the whole test split is scored,
label 1 for every other class, category = the class folder's name. A test class without a train
folder is allowed (it is only ever anomalous). The profile follows the image size found: at most
28 px and greyscale → "fmnist" (1 channel), at most 32 px → "cifar10", else "imagenet". As
Outlier Exposure the tree gives the train images of all classes but the excluded ones.

Hidden files are skipped silently, other non-image entries with one warning; an empty class
folder or an image that does not decode is an error naming the file (images are decoded when
accessed, so a corrupt file surfaces when its split is first read).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from xadbench.dataset import Dataset
from xadbench.datasets.onevsrest import (
    IMAGE_EXTENSIONS, check_image_size, file_samples, is_hidden, list_images, one_line,
    resolve_class, warn_skipped,
)
from xadbench.errors import DataError, XadError
from xadbench.profiles import profile_for_images
from xadbench.types import Sample, Task

LAYOUT = "train/<class>/*.png|jpg and test/<class>/ (or val/<class>/)"
GREY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})
TEST_SPLITS = ("test", "val")


@dataclass(frozen=True)
class _Tree:
    train: dict[str, list[Path]]
    test_dir: Path
    test: dict[str, list[Path]]
    profile: str


def _profile_of(images: Sequence[Path]) -> str:
    """The profile that fits the largest of `images` (header only, no decoding)."""
    sides, grey = [], True
    for path in images:
        try:
            with Image.open(path) as im:
                sides.append(max(im.size))
                grey = grey and im.mode in GREY_MODES
        except Exception as exc:  # PIL raises many types for bad files; all mean the same here
            raise DataError(
                f"cannot read image {path} ({type(exc).__name__}: {one_line(exc)}); the file is "
                "corrupt: replace it or delete it"
            ) from None
    return profile_for_images(max(sides), grey)


def _class_folders(split: Path, skipped: list[Path]) -> dict[str, list[Path]]:
    """{class name: its image files} for one split folder; every class must hold images."""
    classes = {}
    for path in sorted(split.iterdir()):
        if is_hidden(path):
            continue
        if not path.is_dir():
            skipped.append(path)
            continue
        images = list_images(path, skipped)
        if not images:
            raise DataError(
                f"class folder {path} holds no images ({'/'.join(sorted(IMAGE_EXTENSIONS))}); "
                "add its images or delete the folder"
            )
        classes[path.name] = images
    if not classes:
        raise DataError(f"{split} holds no class folders; expected {split}/<class>/*.png|jpg")
    return classes


class Folder(Dataset):
    """A folder-per-class tree (see the module docstring); `runner.open_dataset` opens any
    folder path given as a data set name with this class."""

    def __init__(self, root: str | Path | None = None, download: bool = False):
        super().__init__(root, download)
        if download:
            raise XadError("the folder data set reads local files only: --download does not apply")
        self._tree: _Tree | None = None

    @property
    def profile(self) -> str:  # type: ignore[override]
        return self._scan().profile

    @property
    def _mode(self) -> str:
        return "L" if self.profile == "fmnist" else "RGB"

    def _scan(self) -> _Tree:
        if self._tree is None:
            if self.root is None:
                raise DataError(f"the folder data set needs --root <folder holding {LAYOUT}>")
            if not self.root.is_dir():
                raise DataError(f"data set root {self.root} does not exist or is not a folder; expected {LAYOUT}")
            train_dir = self.root / "train"
            if not train_dir.is_dir():
                raise DataError(f"{train_dir} is missing: a folder data set holds {LAYOUT}")
            test_dir = next((self.root / s for s in TEST_SPLITS if (self.root / s).is_dir()), None)
            if test_dir is None:
                raise DataError(
                    f"{self.root} has neither test/ nor val/: a folder data set holds {LAYOUT}"
                )
            skipped: list[Path] = []
            train = _class_folders(train_dir, skipped)
            test = _class_folders(test_dir, skipped)
            warn_skipped(skipped, self.root)
            self._tree = _Tree(train, test_dir, test, _profile_of([files[0] for files in train.values()]))
        return self._tree

    def classes(self) -> list[str]:
        """The class folders under train/, sorted."""
        return list(self._scan().train)

    def load(self, class_name: str, image_size: int) -> Task:
        check_image_size(image_size)
        tree = self._scan()
        nominal = resolve_class(class_name, self.classes(), f"folder data set {self.root}")
        if nominal not in tree.test:
            raise DataError(
                f"{tree.test_dir / nominal} is missing: the test split needs images of the nominal "
                f"class {nominal!r} to score against the others"
            )
        train = file_samples([(p, 0, nominal) for p in tree.train[nominal]], self.root, image_size, self._mode)
        test = file_samples(
            [(p, int(c != nominal), c) for c, files in tree.test.items() for p in files],
            self.root, image_size, self._mode,
        )
        return Task(train=train, test=test)

    def outlier_exposure(self, image_size: int, exclude: Sequence[str] = ()) -> Sequence[Sample]:
        """The train images of all classes except `exclude` (names or indices), label 1,
        decoded on access."""
        check_image_size(image_size)
        tree = self._scan()
        dropped = {resolve_class(c, self.classes(), f"folder data set {self.root}") for c in exclude}
        files = [(p, 1, c) for c, paths in tree.train.items() if c not in dropped for p in paths]
        return file_samples(files, self.root, image_size, self._mode)
