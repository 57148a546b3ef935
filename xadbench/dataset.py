"""The data set contract: a named collection of classes, each loadable as a one-class `Task`."""
from __future__ import annotations

import abc
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from xadbench.errors import XadError
from xadbench.types import Sample, Task


class Dataset(abc.ABC):
    """A data set plugin.

    display_name: how tables and reports name it (e.g. "MVTec-AD"); None: its registered name.
    profile: the paper setup it follows (see `xadbench.profiles`): a class attribute, or a
        property where it follows the data found (a folder of 32 px images follows "cifar10");
        job ids read a class attribute without opening the data set, so an instance must not
        change it.
    has_masks: whether test anomalies carry pixel ground truth (pixel AUC is computed then).
    data_folder: the folder it is looked for under the default data places when no root is given
        (see `xadbench.data_root`); None: it takes no default root (it is given its folder, or
        has its own default).
    can_download: whether `download=True` fetches its files (so the "not found" message offers
        --download).
    """

    display_name: ClassVar[str | None] = None
    profile: str = "imagenet"
    has_masks: ClassVar[bool] = False
    data_folder: ClassVar[str | None] = None
    can_download: ClassVar[bool] = False

    def __init__(self, root: str | Path | None = None, download: bool = False):
        self.root = Path(root) if root is not None else None
        self.download = download

    @abc.abstractmethod
    def classes(self) -> list[str]:
        """The class names found (or known) for this data set."""

    @abc.abstractmethod
    def load(self, class_name: str, image_size: int) -> Task:
        """The nominal training images of `class_name` and the scored test split, images
        resized to `image_size`, masks at their own resolution."""

    def fetch(self, classes: Sequence[str]) -> None:
        """Download what `classes` need, when opened with download=True and the data set fetches
        per class; the default does nothing (torchvision's sets fetch when first read)."""

    def check(self, class_name: str, image_size: int) -> None:
        """Raise every error `load(class_name, image_size)` would raise, as cheaply as the data
        set allows, so a run can check all its classes before training any. The default loads
        the class; a data set that decodes eagerly overrides it with a cheaper pass."""
        self.load(class_name, image_size)

    def outlier_exposure(self, image_size: int, exclude: Sequence[str] = ()) -> Sequence[Sample]:
        """All training images of all classes except `exclude`, as Outlier Exposure (label 1)."""
        raise XadError(f"data set {type(self).__name__} cannot serve as Outlier Exposure")
