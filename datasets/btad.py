"""BTAD, the beanTech Anomaly Detection data set (Mishra et al., ISIE 2021): three industrial
products, "01", "02" and "03", in the layout its archive unpacks to::

    <root>/<class>/train/ok/*.bmp|png           nominal training images
    <root>/<class>/test/ok/, test/ko/           nominal and defective test images
    <root>/<class>/ground_truth/ko/<name>.png|bmp   one mask per defective image, named as it

The checks are MVTec-AD's (`xadbench.datasets.mvtec`); the archive is a zip file, which
`xadbench.download` does not unpack, so there is no --download: `MANUAL` says how to get it.
"""
from __future__ import annotations

from collections.abc import Sequence

from xadbench.datasets.mvtec import MVTecLayout
from xadbench.errors import DataError

KNOWN_CLASSES = ("01", "02", "03")
ARCHIVE_URL = "https://avires.dimi.uniud.it/papers/btad/btad.zip"
LICENCE = "BTAD (Mishra et al., ISIE 2021) is under CC BY-NC-SA 4.0: non-commercial use only"
MANUAL = (
    f"fetch BTAD by hand: download {ARCHIVE_URL}, unzip it and pass the folder holding 01/, 02/ and 03/ "
    f"(BTech_Dataset_transformed) as --root; {LICENCE}"
)


class BTAD(MVTecLayout):
    """BTAD in its published layout (see the module docstring)."""

    profile = "mvtec"
    title = "BTAD"
    url = ARCHIVE_URL
    data_folder = "btad"
    can_download = False
    nominal = "ok"
    mask_suffix = ""
    known_classes = KNOWN_CLASSES

    def fetch(self, classes: Sequence[str]) -> None:
        """BTAD's archive is a zip file: with download, one line saying how to get it (`MANUAL`)."""
        if self.download:
            raise DataError(MANUAL)
