"""BTAD, the beanTech Anomaly Detection data set (Mishra et al., ISIE 2021): three industrial
products, "01", "02" and "03", in the layout its archive unpacks to::

    <root>/<class>/train/ok/*.bmp|png           nominal training images
    <root>/<class>/test/ok/, test/ko/           nominal and defective test images
    <root>/<class>/ground_truth/ko/<name>.png|bmp   one mask per defective image, named as it

The checks are MVTec-AD's (`xadbench.datasets.mvtec`). --download fetches the published zip
archive (`xadbench.datasets.archives`) and moves the classes out of its one folder into the root.
"""
from __future__ import annotations

from collections.abc import Sequence

from xadbench.datasets.archives import BTAD_CLASSES, PUBLISHED
from xadbench.datasets.mvtec import MVTecLayout


class BTAD(MVTecLayout):
    """BTAD in its published layout (see the module docstring)."""

    profile = "mvtec"
    display_name = "BTAD"
    url = PUBLISHED["btad"].archive.url
    data_folder = "btad"
    can_download = True
    nominal = "ok"
    mask_suffix = ""
    known_classes = BTAD_CLASSES

    def fetch(self, classes: Sequence[str]) -> None:
        """With download, fetch BTAD's archive when a class among `classes` is missing."""
        if self.download:
            from xadbench.datasets.archives import fetch_missing

            if self.root is None:
                self._data_root()  # raises: "needs root"
            fetch_missing("btad", self.root, classes)
