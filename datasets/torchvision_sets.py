"""Fashion-MNIST, CIFAR-10, CIFAR-100 and EMNIST (letters), read by torchvision's own classes.

The paper's standard benchmarks (section 4.1): each Fashion-MNIST or CIFAR-10 class in turn is
nominal, one-vs-rest (see `xadbench.datasets.onevsrest`). The Outlier Exposure sources it names:
CIFAR-100 for CIFAR-10 (it shares no class with CIFAR-10), and EMNIST or greyscale CIFAR-100 for
Fashion-MNIST. `outlier_exposure` returns RGB CIFAR-100 at the requested size; the method side
converts channels.

Files live where torchvision keeps them under `root`; nothing is fetched unless `download=True`
(`--download`), and then by torchvision's download code. Each split is read once as uint8 and
each image converted to float32 when it is accessed.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torchvision.datasets as tvd

from xadbench.dataset import Dataset
from xadbench.datasets.onevsrest import (
    array_samples, check_image_size, one_line, resolve_class, slug,
)
from xadbench.errors import DataError
from xadbench.types import Sample, Task


class TorchvisionSet(Dataset):
    """A torchvision classification data set under the one-vs-rest protocol.

    Class names are torchvision's, made command-line friendly (`slug`: "T-shirt/top" becomes
    "t-shirt_top"); `load` also accepts the original name or the index in `classes()`.
    """

    #: Human name in messages.
    display_name: ClassVar[str]
    #: The files torchvision reads, relative to root.
    files: ClassVar[tuple[str, ...]]
    #: Where the files come from, for the "not found" message.
    url: ClassVar[str]
    #: Labels below this are placeholders, not classes (EMNIST letters has "N/A" at 0).
    first_label: ClassVar[int] = 0
    can_download = True

    def __init__(self, root: str | Path | None = None, download: bool = False):
        super().__init__(root, download)
        self._splits: dict[bool, tuple[np.ndarray, np.ndarray, list[str]]] = {}

    @abc.abstractmethod
    def _open(self, root: Path, train: bool) -> Any:
        """The torchvision data set object for one split."""

    def _images(self, data: Any) -> np.ndarray:
        """uint8 (N, H, W) or (N, H, W, 3) from the torchvision object's `data`."""
        return np.asarray(data)

    def _split(self, train: bool) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(images, labels, class names) of the train or test split, read once."""
        if train not in self._splits:
            root = self._root()
            try:
                data = self._open(root, train)
            except Exception as exc:  # torchvision raises RuntimeError, OSError, parse errors...
                fix = (
                    "check the network" if self.download
                    else f"delete {root / self._folder} and pass --download to fetch it again"
                )
                raise DataError(
                    f"cannot {'fetch' if self.download else 'read'} {self.display_name} under {root} "
                    f"({type(exc).__name__}: {one_line(exc)}); {fix}, or put intact files from "
                    f"{self.url} there"
                ) from None
            names = [slug(name) for name in data.classes]
            self._splits[train] = (self._images(data.data), np.asarray(data.targets, dtype=np.int64), names)
        return self._splits[train]

    @property
    def _folder(self) -> str:
        return Path(self.files[0]).parent.as_posix()

    def _root(self) -> Path:
        """Root, checked to hold the files unless torchvision is to download them."""
        if self.root is None:
            raise DataError(
                f"{self.display_name} needs a root folder (--root) holding {self._folder}/; pass "
                "--download to fetch it there with torchvision"
            )
        missing = [f for f in self.files if not (self.root / f).is_file()]
        if missing and not self.download:
            raise DataError(
                f"{self.display_name} not found: looked for {self.root / missing[0]}"
                f"{f' and {len(missing) - 1} more files' if len(missing) > 1 else ''}; pass "
                f"--download to fetch it into {self.root} with torchvision, or unpack the files "
                f"from {self.url} into {self.root / self._folder}"
            )
        return self.root

    def classes(self) -> list[str]:
        return self._split(True)[2][self.first_label:]

    def load(self, class_name: str, image_size: int) -> Task:
        """Class `class_name` nominal (its training images), the whole test split scored."""
        check_image_size(image_size)
        classes = self.classes()
        nominal = self.first_label + classes.index(resolve_class(class_name, classes, self.display_name))
        images, labels, names = self._split(True)
        train_indices = np.flatnonzero(labels == nominal)
        train = array_samples(images, train_indices, [0] * len(train_indices),
                              [names[nominal]] * len(train_indices), "train", image_size)
        images, labels, names = self._split(False)
        test = array_samples(images, range(len(labels)), (labels != nominal).astype(int),
                             [names[i] for i in labels], "test", image_size)
        return Task(train=train, test=test)

    def outlier_exposure(self, image_size: int, exclude: Sequence[str] = ()) -> Sequence[Sample]:
        """All training images of all classes except `exclude` (names or indices), label 1."""
        check_image_size(image_size)
        classes = self.classes()
        dropped = {self.first_label + classes.index(resolve_class(c, classes, self.display_name)) for c in exclude}
        images, labels, names = self._split(True)
        keep = np.flatnonzero(~np.isin(labels, list(dropped)))
        return array_samples(images, keep, [1] * len(keep), [names[labels[i]] for i in keep], "train", image_size)


class FashionMNIST(TorchvisionSet):
    """Fashion-MNIST (Xiao et al., 2017): 10 classes, 28 × 28 greyscale, 60k train / 10k test."""

    display_name = "Fashion-MNIST"
    profile = "fmnist"
    data_folder = "fmnist"
    files = tuple(f"FashionMNIST/raw/{split}-{kind}-ubyte" for split in ("train", "t10k")
                  for kind in ("images-idx3", "labels-idx1"))
    url = "https://github.com/zalandoresearch/fashion-mnist"

    def _open(self, root: Path, train: bool) -> Any:
        return tvd.FashionMNIST(root, train=train, download=self.download)


class EMNISTLetters(TorchvisionSet):
    """EMNIST letters (Cohen et al., 2017): 26 classes "a"-"z", 28 × 28 greyscale.

    EMNIST stores its images transposed relative to MNIST; they are transposed back so letters
    stand upright, as the Fashion-MNIST images they stand in for as Outlier Exposure.
    """

    display_name = "EMNIST letters"
    profile = "fmnist"
    data_folder = "emnist"
    files = tuple(f"EMNIST/raw/emnist-letters-{split}-{kind}-ubyte" for split in ("train", "test")
                  for kind in ("images-idx3", "labels-idx1"))
    url = "https://www.nist.gov/itl/products-and-services/emnist-dataset"
    first_label = 1

    def _open(self, root: Path, train: bool) -> Any:
        return tvd.EMNIST(root, split="letters", train=train, download=self.download)

    def _images(self, data: Any) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(data).transpose(0, 2, 1))


class CIFAR10(TorchvisionSet):
    """CIFAR-10 (Krizhevsky, 2009): 10 classes, 32 × 32 RGB, 50k train / 10k test."""

    display_name = "CIFAR-10"
    profile = "cifar10"
    data_folder = "cifar10"
    files = tuple(f"cifar-10-batches-py/{name}" for name in
                  ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
                   "test_batch", "batches.meta"))
    url = "https://www.cs.toronto.edu/~kriz/cifar.html"

    def _open(self, root: Path, train: bool) -> Any:
        return tvd.CIFAR10(root, train=train, download=self.download)


class CIFAR100(TorchvisionSet):
    """CIFAR-100 (Krizhevsky, 2009): 100 fine classes, 32 × 32 RGB; the paper's Outlier Exposure
    for CIFAR-10, and greyscaled for Fashion-MNIST."""

    display_name = "CIFAR-100"
    profile = "cifar10"
    data_folder = "cifar100"
    files = tuple(f"cifar-100-python/{name}" for name in ("train", "test", "meta"))
    url = "https://www.cs.toronto.edu/~kriz/cifar.html"

    def _open(self, root: Path, train: bool) -> Any:
        return tvd.CIFAR100(root, train=train, download=self.download)
