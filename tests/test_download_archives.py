"""--download for VisA and MVTec AD 2 (one archive each, sha256 checked) and the manual step of
MPDD and BTAD, against the loopback server of tests/test_download.py serving replicas of the
official archives written here."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_download import Server, leftovers, sha256
from tests.test_industrial_datasets import make_mvtec_ad2, make_visa
from xadbench.cli import app
from xadbench.datasets import archives
from xadbench.datasets.mvtec_ad2 import MVTecAD2
from xadbench.datasets.visa import VisA
from xadbench.download import Archive
from xadbench.errors import DataError


def tar_of(folder: Path, mode: str) -> bytes:
    """Every file under `folder` in a tar archive (mode "w" or "w:gz"), names relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
    return buffer.getvalue()


def serve(monkeypatch, name: str, data: bytes, server: Server, checksum: str | None, folders: tuple[str, ...]) -> None:
    """Point `name`'s entry of the archive table at the loopback server."""
    published = archives.PUBLISHED[name]
    archive = Archive(published.archive.name, f"{server.url}/{published.archive.name}", checksum, folders)
    monkeypatch.setitem(archives.PUBLISHED, name, archives.Published(archive, published.licence))
    server.files[f"/{published.archive.name}"] = data


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("XADBENCH_DATA", raising=False)


def test_visa_downloads_and_runs_from_the_cli(tmp_path, monkeypatch):
    """No --root: the archive lands under $XADBENCH_DATA/visa, byte for byte, checked against its
    sha256, the licence is printed, no work files stay, and the run scores the class."""
    source = make_visa(tmp_path / "source")
    data = tar_of(source, "w")  # VisA's archive is an uncompressed tar
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "data"))
    with Server({}) as server:
        serve(monkeypatch, "visa", data, server, sha256(data), ("candle", "pcb1", "split_csv"))
        result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", "visa", "--classes", "candle",
                                          "--download", "--no-report", "--out", str(tmp_path / "run")])
        assert result.exit_code == 0, result.output
        assert server.requests == [("/VisA_20220922.tar", None)]
    root = tmp_path / "data" / "visa"
    assert leftovers(root) == leftovers(source)
    assert all((root / p).read_bytes() == (source / p).read_bytes() for p in leftovers(source) if (source / p).is_file())
    assert "CC BY-NC-SA 4.0" in result.output and "no checksum" not in result.output
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    aucs = table[table["metric"].isin(["image_auc", "pixel_auc"]) & (table["method"] == "pixelstats")]
    assert set(table["class"]) == {"candle"} and len(aucs) == 2 and aucs["value"].between(0, 1).all()


def test_mvtec_ad2_downloads_once_and_resumes_a_dropped_connection(tmp_path, monkeypatch):
    source = make_mvtec_ad2(tmp_path / "source")
    data = tar_of(source, "w:gz")
    with Server({}) as server:
        serve(monkeypatch, "mvtec_ad2", data, server, sha256(data), ("can",))
        server.drop_after = len(data) // 3
        root = tmp_path / "mvtec_ad_2"
        with pytest.raises(DataError, match="rerun the same command to resume it"):
            MVTecAD2(root, download=True).fetch(["can"])
        assert leftovers(root) == [".downloads", ".downloads/mvtec_ad_2.tar.gz.part"]
        MVTecAD2(root, download=True).load("can", 8)
        MVTecAD2(root, download=True).fetch(["can"])  # present: nothing fetched
        assert server.requests == [("/mvtec_ad_2.tar.gz", None), ("/mvtec_ad_2.tar.gz", f"bytes={len(data) // 3}-")]
    assert leftovers(root) == leftovers(source)


def test_a_wrong_checksum_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    data = tar_of(make_visa(tmp_path / "source"), "w")
    with Server({}) as server:
        serve(monkeypatch, "visa", data, server, "0" * 64, ("candle", "pcb1", "split_csv"))
        with pytest.raises(DataError) as info:
            VisA(tmp_path / "visa", download=True).fetch(["candle"])
    assert str(info.value).startswith(f"VisA_20220922.tar from {server.url}/VisA_20220922.tar has sha256 {sha256(data)}")
    assert not (tmp_path / "visa").exists()


def test_the_published_tables_are_https_with_checksums():
    for published in archives.PUBLISHED.values():
        assert published.archive.url.startswith("https://") and len(published.archive.sha256) == 64
        assert "CC BY" in published.licence
    assert archives.PUBLISHED["visa"].archive.folders[-1] == "split_csv"
    assert len(archives.VISA_CLASSES) == 12 and len(archives.MVTEC_AD2_CLASSES) == 8


@pytest.mark.parametrize("name, line", [
    ("mpdd", "MPDD is not downloadable by xadbench: open https://github.com/stepanje/MPDD"),
    ("btad", "fetch BTAD by hand: download https://avires.dimi.uniud.it/papers/btad/btad.zip, unzip it"),
])
def test_mpdd_and_btad_print_the_manual_step(tmp_path, name, line):
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", name, "--root", str(tmp_path),
                                      "--classes", "01" if name == "btad" else "connector", "--download",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and line in result.output and "CC BY-NC-SA 4.0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
