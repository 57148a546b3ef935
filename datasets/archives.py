"""Where VisA, MVTec AD 2 and BTAD are published, their checksums and licences.

Each is one archive holding every class (and VisA's split_csv/), fetched with
`xadbench.download.install` when a class asked for is missing. The publishers give no checksum;
each archive's sha256 is the one anomalib checks (and independent downloads record), and it is
checked here too. BTAD's zip archive holds its classes in one folder, BTech_Dataset_transformed/,
whose contents are moved up into the root once installed. MVTec-AD's per-class archives are in
`xadbench.datasets.mvtec_archives`.
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xadbench.download import Archive, install


@dataclass(frozen=True)
class Published:
    """A data set published as one archive: the archive, the licence printed when it is fetched,
    `inner`: the archive's one folder that holds the data set's folders, or None where they are
    at its top, and `inner_folders`: the folders it holds then."""

    archive: Archive
    licence: str
    inner: str | None = None
    inner_folders: tuple[str, ...] = ()

    @property
    def folders(self) -> tuple[str, ...]:
        """The folders the archive installs into the root."""
        return self.archive.folders if self.inner is None else self.inner_folders


VISA_CLASSES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
                "pcb3", "pcb4", "pipe_fryum")
MVTEC_AD2_CLASSES = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
BTAD_CLASSES = ("01", "02", "03")
BTAD_FOLDER = "BTech_Dataset_transformed"

PUBLISHED = {
    "visa": Published(
        Archive("VisA_20220922.tar", "https://amazon-visual-anomaly.s3.us-west-2.amazonaws.com/VisA_20220922.tar",
                sha256="2eb8690c803ab37de0324772964100169ec8ba1fa3f7e94291c9ca673f40f362",
                folders=(*VISA_CLASSES, "split_csv")),
        "VisA (Zou et al., ECCV 2022) is © Amazon.com; anomalib records its licence as CC BY-NC-SA 4.0: "
        "non-commercial use only, adaptations under the same licence; the publisher's terms are at "
        "https://github.com/amazon-science/spot-diff"),
    "mvtec_ad2": Published(
        Archive("mvtec_ad_2.tar.gz", "https://www.mydrive.ch/shares/150997/701c90d3aea6588f404936e32a674602/"
                "download/466712769-1743429042/mvtec_ad_2.tar.gz",
                sha256="c0ded99ef32bfc8e352d52beb44515e5b292b8598cb963aadfa91ca0763505e4",
                folders=MVTEC_AD2_CLASSES),
        "MVTec AD 2 (Heckler-Kram et al., 2025) is © MVTec Software GmbH under CC BY-NC-SA 4.0: non-commercial "
        "use only, adaptations under the same licence (https://www.mvtec.com/company/research/datasets/mvtec-ad-2)"),
    "btad": Published(
        Archive("btad.zip", "https://avires.dimi.uniud.it/papers/btad/btad.zip",
                sha256="461c9387e515bfed41ecaae07c50cf6b10def647b36c9e31d239ab2736b10d2a", folders=(BTAD_FOLDER,)),
        "BTAD (Mishra et al., ISIE 2021) is under CC BY-NC-SA 4.0: non-commercial use only, adaptations under the "
        "same licence (https://avires.dimi.uniud.it/papers/btad/)",
        inner=BTAD_FOLDER, inner_folders=BTAD_CLASSES),
}


def fetch_missing(name: str, root: Path, needed: Sequence[str]) -> None:
    """Fetch data set `name`'s archive into `root` when one of the folders `needed` is missing
    there; folders already in `root` are kept."""
    published = PUBLISHED[name]
    if all((root / folder).exists() for folder in needed if folder in published.folders):
        return
    install(root, [published.archive], published.licence)
    if published.inner is not None:
        inner = root / published.inner
        for folder in sorted(inner.iterdir()):
            if not (root / folder.name).exists():
                folder.rename(root / folder.name)
        shutil.rmtree(inner)
