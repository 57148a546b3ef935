"""MPDD, the Metal Parts Defect Detection data set (Jezek et al., ICUMT 2021): six classes of
painted metal parts in MVTec-AD's folder layout (`xadbench.datasets.mvtec`).

Its files are published on a file-sharing page that needs a browser, so there is no --download:
`MANUAL` says how to get them.
"""
from __future__ import annotations

from collections.abc import Sequence

from xadbench.datasets.mvtec import MVTecLayout
from xadbench.errors import DataError

KNOWN_CLASSES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
PAGE = "https://github.com/stepanje/MPDD"
LICENCE = f"MPDD (Jezek et al., ICUMT 2021) is under CC BY-NC-SA 4.0: non-commercial use only ({PAGE})"
MANUAL = (
    f"MPDD is not downloadable by xadbench: open {PAGE}, follow its download link, unpack the archive and "
    "pass its folder (the one holding bracket_black/, connector/, ...) as --root; " + LICENCE
)


class MPDD(MVTecLayout):
    """MPDD: `<root>/<class>/{train/good, test/<defect>, ground_truth/<defect>/<name>_mask.png}`."""

    profile = "mvtec"
    display_name = "MPDD"
    url = PAGE
    data_folder = "mpdd"
    can_download = False
    known_classes = KNOWN_CLASSES

    def fetch(self, classes: Sequence[str]) -> None:
        """MPDD needs a browser to fetch: with download, one line saying how (`MANUAL`)."""
        if self.download:
            raise DataError(MANUAL)
