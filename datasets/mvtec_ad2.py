"""MVTec AD 2 (Heckler-Kram et al., 2025): eight classes in MVTec-AD's layout with the public test
split and its masks in one folder::

    <root>/<class>/train/good/*.png                         nominal training images
    <root>/<class>/validation/good/*.png                    nominal validation images (not read)
    <root>/<class>/test_public/{good,bad}/*.png              the scored test split
    <root>/<class>/test_public/ground_truth/bad/<name>_mask.png

The private test splits (test_private, test_private_mixed) have no labels and no masks: MVTec
scores them on its evaluation server. `test_split` names the split; only "public" can be scored
here, the private ones are refused with one line.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xadbench.datasets.mvtec import MVTecLayout
from xadbench.errors import DataError

KNOWN_CLASSES = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad-2"
TEST_SPLITS = ("public", "private", "private_mixed")


class MVTecAD2(MVTecLayout):
    """MVTec AD 2 (see the module docstring).

    root: the folder holding the class folders. download: fetch the archive when a class asked
        for is missing (`xadbench.datasets.archives`). test_split: "public" (the only one with
        ground truth; the private ones are refused).
    """

    profile = "mvtec"
    display_name = "MVTec AD 2"
    url = PAGE
    data_folder = "mvtec_ad_2"
    can_download = True
    test_folder = "test_public"
    ground_truth = "test_public/ground_truth"
    known_classes = KNOWN_CLASSES

    def __init__(self, root: str | Path | None = None, download: bool = False, test_split: str = "public"):
        super().__init__(root, download)
        if test_split not in TEST_SPLITS:
            raise DataError(f"MVTec AD 2 has no test split {test_split!r}; its splits: {', '.join(TEST_SPLITS)}")
        if test_split != "public":
            raise DataError(
                f"MVTec AD 2's test_{test_split} split has no labels and no masks (MVTec scores it on its "
                "evaluation server, https://benchmark.mvtec.com), so no AUC can be computed here: use "
                "test_split=public"
            )

    def fetch(self, classes: Sequence[str]) -> None:
        """With download, fetch MVTec AD 2's archive when a class among `classes` is missing."""
        if self.download:
            from xadbench.datasets.archives import fetch_missing

            if self.root is None:
                self._data_root()  # raises: "needs root"
            fetch_missing("mvtec_ad2", self.root, classes)
