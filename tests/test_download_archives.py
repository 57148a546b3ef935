"""--download for VisA, MVTec AD 2 and BTAD (one archive each, sha256 checked; BTAD's a zip file)
and the manual step of MPDD, against the loopback server of tests/test_download.py serving
replicas of the official archives written here."""
from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.test_download import Server, leftovers, sha256
from tests.test_industrial_datasets import make_btad, make_mvtec_ad2, make_visa
from xadbench.cli import app
from xadbench.datasets import archives
from xadbench.datasets.btad import BTAD
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


def zip_of(folder: Path, extra: dict[str, int] = {}) -> bytes:
    """Every file under `folder` in a zip archive, names relative to folder's parent (BTAD's
    archive holds one folder); `extra`: further members {name: Unix mode}, holding b"x"."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
        for name, mode in extra.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            archive.writestr(info, b"x")
    return buffer.getvalue()


def serve(monkeypatch, name: str, data: bytes, server: Server, checksum: str | None, folders: tuple[str, ...]) -> None:
    """Point `name`'s entry of the archive table at the loopback server."""
    published = archives.PUBLISHED[name]
    archive = Archive(published.archive.name, f"{server.url}/{published.archive.name}", checksum, folders)
    monkeypatch.setitem(archives.PUBLISHED, name, archives.Published(archive, published.licence, published.inner,
                                                                     published.inner_folders))
    server.files[f"/{published.archive.name}"] = data


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("XADBENCH_DATA", raising=False)


@pytest.mark.slow
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
    assert set(archives.PUBLISHED) == {"visa", "mvtec_ad2", "btad"}
    for published in archives.PUBLISHED.values():
        assert published.archive.url.startswith("https://") and len(published.archive.sha256) == 64
        assert "CC BY" in published.licence
    assert archives.PUBLISHED["visa"].archive.folders[-1] == "split_csv"
    assert len(archives.VISA_CLASSES) == 12 and len(archives.MVTEC_AD2_CLASSES) == 8


def test_btad_unzips_and_moves_its_classes_into_the_root(tmp_path, monkeypatch):
    """BTAD's zip archive holds BTech_Dataset_transformed/01, 02, 03: after the download the
    classes sit directly in the root, byte for byte, and the wrapper folder is gone."""
    source = tmp_path / "source" / archives.BTAD_FOLDER
    for name in archives.BTAD_CLASSES:
        make_btad(source, name)
    data = zip_of(source)
    root = tmp_path / "btad"
    with Server({}) as server:
        serve(monkeypatch, "btad", data, server, sha256(data), (archives.BTAD_FOLDER,))
        task = BTAD(root, download=True).load("02", 8)
        BTAD(root, download=True).fetch(["01", "03"])  # present: nothing fetched
        assert server.requests == [("/btad.zip", None)]
    assert leftovers(root) == leftovers(source)
    assert len(task.train) == 3 and len(task.test) == 4


@pytest.mark.parametrize("member, mode, reason", [
    ("../evil.txt", stat.S_IFREG | 0o644, "'../evil.txt' leaves the target folder"),
    ("/etc/evil.txt", stat.S_IFREG | 0o644, "'/etc/evil.txt' leaves the target folder"),
    ("BTech_Dataset_transformed/link", stat.S_IFLNK | 0o777, "'BTech_Dataset_transformed/link' is a symbolic link"),
])
def test_an_unsafe_zip_member_refuses_the_archive(tmp_path, monkeypatch, member, mode, reason):
    source = tmp_path / "source" / archives.BTAD_FOLDER
    make_btad(source, "01")
    data = zip_of(source, {member: mode})
    root = tmp_path / "btad"
    with Server({}) as server:
        serve(monkeypatch, "btad", data, server, sha256(data), (archives.BTAD_FOLDER,))
        with pytest.raises(DataError) as info:
            BTAD(root, download=True).fetch(["01"])
    assert str(info.value) == f"archive btad.zip has an unsafe member ({reason}); refused it and deleted it"
    assert not root.exists() and not (tmp_path / "evil.txt").exists()


def test_mpdd_prints_the_manual_step(tmp_path):
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", "mpdd", "--root", str(tmp_path),
                                      "--classes", "connector", "--download", "--out", str(tmp_path / "run")])
    line = "MPDD is not downloadable by xadbench: open https://github.com/stepanje/MPDD"
    assert result.exit_code != 0 and line in result.output and "CC BY-NC-SA 4.0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()
