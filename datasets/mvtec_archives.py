"""Where MVTec-AD is published, and its checksums.

MVTec publishes one archive per class and one with all 15 classes. Only the complete archive's
sha256 is known (5,264,982,680 bytes; the value anomalib checks, and the one several independent
downloads record); no checksum is published for the per-class archives. So: when every class is
missing and wanted, the complete archive is fetched and verified; otherwise only the wanted
classes' archives are, each with a one-line warning that names the sha256 it had (see
`xadbench.download`).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from xadbench.download import Archive, install

PAGE = "https://www.mvtec.com/company/research/datasets/mvtec-ad"
LICENCE = (
    "MVTec-AD (Bergmann et al., CVPR 2019) is © MVTec Software GmbH under CC BY-NC-SA 4.0: "
    f"non-commercial use only, adaptations under the same licence ({PAGE})"
)
_SHARE = "https://www.mydrive.ch/shares/38536/3830184030e49fe74747669442f0f282/download"
_PER_CLASS_URLS = {
    "bottle": f"{_SHARE}/420937370-1629951468/bottle.tar.xz",
    "cable": f"{_SHARE}/420937413-1629951498/cable.tar.xz",
    "capsule": f"{_SHARE}/420937454-1629951595/capsule.tar.xz",
    "carpet": f"{_SHARE}/420937484-1629951672/carpet.tar.xz",
    "grid": f"{_SHARE}/420937487-1629951814/grid.tar.xz",
    "hazelnut": f"{_SHARE}/420937545-1629951845/hazelnut.tar.xz",
    "leather": f"{_SHARE}/420937607-1629951964/leather.tar.xz",
    "metal_nut": f"{_SHARE}/420937637-1629952063/metal_nut.tar.xz",
    "pill": "https://www.mydrive.ch/shares/43421/11a215a5749fcfb75e331ddd5f8e43ee/download/420938129-1629953099/pill.tar.xz",
    "screw": f"{_SHARE}/420938130-1629953152/screw.tar.xz",
    "tile": f"{_SHARE}/420938133-1629953189/tile.tar.xz",
    "toothbrush": f"{_SHARE}/420938134-1629953256/toothbrush.tar.xz",
    "transistor": f"{_SHARE}/420938166-1629953277/transistor.tar.xz",
    "wood": f"{_SHARE}/420938383-1629953354/wood.tar.xz",
    "zipper": f"{_SHARE}/420938385-1629953449/zipper.tar.xz",
}
PER_CLASS = {
    name: Archive(f"{name}.tar.xz", url, sha256=None, folders=(name,))
    for name, url in _PER_CLASS_URLS.items()
}
COMPLETE = Archive(
    "mvtec_anomaly_detection.tar.xz",
    f"{_SHARE}/420938113-1629952094/mvtec_anomaly_detection.tar.xz",
    sha256="cf4313b13603bec67abb49ca959488f7eedce2a9f7795ec54446c649ac98cd3d",
    folders=tuple(_PER_CLASS_URLS),
)


def archives_for(classes: Sequence[str]) -> list[Archive]:
    """The archives that hold `classes` (MVTec-AD class names): the complete, verifiable archive
    when they are all of them, else one archive per class."""
    if set(classes) == set(COMPLETE.folders):
        return [COMPLETE]
    return [PER_CLASS[name] for name in classes]


def fetch(root: Path, classes: Sequence[str]) -> None:
    """Download the MVTec-AD classes among `classes` that are not under `root` yet."""
    missing = [name for name in dict.fromkeys(classes) if name in PER_CLASS and not (root / name).exists()]
    install(root, archives_for(missing), LICENCE)
