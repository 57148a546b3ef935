"""--download for MVTec-AD and the default data root, against a loopback HTTP server.

The server (127.0.0.1, a free port, started and stopped by each test) serves small archives
generated here in the official per-class layout; it can drop the connection part-way, ignore
Range requests, and records every request, so resuming is checked on the wire.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from xadbench import download
from xadbench.cli import app
from xadbench.datasets import mvtec_archives
from xadbench.datasets.mvtec import KNOWN_CLASSES, MVTecAD
from xadbench.download import Archive
from xadbench.errors import DataError
from xadbench.runner import open_dataset


# ---------------------------------------------------------------------------------------------
# Archives in MVTec-AD's per-class layout, and a server for them.


def _png(seed: int, mask: bool = False) -> bytes:
    rng = np.random.default_rng(seed)
    if mask:
        array = np.zeros((24, 24), np.uint8)
        array[4:12, 6:14] = 255
    else:
        array = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def class_files(name: str) -> dict[str, bytes]:
    """One class as the official archive holds it: <class>/train/good, test/<defect>,
    ground_truth/<defect>/<image>_mask.png, and the licence text."""
    files = {f"{name}/train/good/{i:03d}.png": _png(i) for i in range(4)}
    files |= {f"{name}/test/good/{i:03d}.png": _png(100 + i) for i in range(2)}
    files |= {f"{name}/test/broken/{i:03d}.png": _png(200 + i) for i in range(2)}
    files |= {f"{name}/ground_truth/broken/{i:03d}_mask.png": _png(0, mask=True) for i in range(2)}
    files[f"{name}/license.txt"] = b"CC BY-NC-SA 4.0\n"
    return files


def tar_xz(files: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """Serves `files` {url path: bytes} on 127.0.0.1 with Range support.

    drop_after: close the connection after sending this many body bytes of the next response
    (Content-Length still announces all of it), once. ignore_range: answer Range requests with
    the whole file (200). requests: (path, Range header) of every request.
    """

    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.drop_after: int | None = None
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []
        self.redirects: dict[str, str] = {}  # url path: Location of a 302
        self.headers: dict[str, str] = {}  # sent instead of the computed ones
        self.trickle_s: float | None = None  # send the body a byte at a time, this far apart
        self.started = threading.Event()  # set when a response body begins
        self.hold = threading.Event()  # a set event lets bodies go; cleared, they wait for it
        self.hold.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append((self.path, wanted))
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if wanted and not server.ignore_range:
                    start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                for key, value in ({"Content-Length": str(len(body))} | server.headers).items():
                    self.send_header(key, value)
                self.end_headers()
                server.started.set()
                server.hold.wait()
                if server.trickle_s is not None:
                    for i in range(len(body)):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.trickle_s)
                    return
                if server.drop_after is not None:
                    self.wfile.write(body[: server.drop_after])
                    server.drop_after = None
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.01,), daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def bottle_server(monkeypatch) -> Iterator[tuple[Server, bytes]]:
    """The bottle archive served on loopback, MVTec's table pointed at it with its checksum."""
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", sha256(archive))
        yield server, archive


def point_table_at(monkeypatch, server: Server, name: str, checksum: str | None) -> None:
    entry = Archive(f"{name}.tar.xz", f"{server.url}/{name}.tar.xz", checksum, (name,))
    monkeypatch.setitem(mvtec_archives.PER_CLASS, name, entry)


def leftovers(root: Path) -> list[str]:
    """Everything under root, as sorted relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("XADBENCH_DATA", raising=False)


# ---------------------------------------------------------------------------------------------
# Downloading.


def test_run_downloads_the_asked_class_and_trains_on_it(bottle_server, tmp_path, monkeypatch):
    """The happy path end to end from the CLI, with no --root: the class lands under
    $XADBENCH_DATA/mvtec_ad, byte for byte the archive's files, nothing else is fetched, no
    work files stay, the licence is shown, and the run trains and scores on the data."""
    server, _ = bottle_server
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", "mvtec", "--classes", "bottle",
                                      "--download", "--no-report", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    root = tmp_path / "data" / "mvtec_ad"
    expected = class_files("bottle")
    folders = {parent.as_posix() for path in expected for parent in Path(path).parents if parent != Path(".")}
    assert leftovers(root) == sorted({*expected, *folders})
    assert all((root / path).read_bytes() == data for path, data in expected.items())
    assert server.requests == [("/bottle.tar.xz", None)]
    assert "CC BY-NC-SA 4.0" in result.output and "no checksum" not in result.output
    table = pd.read_csv(tmp_path / "run" / "results.csv")
    provenance = json.loads((tmp_path / "run" / "config.json").read_text())[-1]["provenance"]
    assert provenance["data_root"] == str(root.resolve())  # the default root is recorded
    aucs = table[table["metric"].isin(["image_auc", "pixel_auc"]) & (table["method"] == "pixelstats")]
    assert set(table["class"]) == {"bottle"} and len(aucs) == 2 and aucs["value"].between(0, 1).all()
    assert table["n_test"].iloc[0] == 4


def test_a_present_class_is_not_fetched_again(bottle_server, tmp_path):
    server, _ = bottle_server
    MVTecAD(tmp_path, download=True).fetch(["bottle"])
    MVTecAD(tmp_path, download=True).load("bottle", 16)
    assert len(server.requests) == 1


def test_dropped_connection_is_one_line_and_the_rerun_resumes(bottle_server, tmp_path):
    """The server closes the connection part-way: one line that says how to resume, only the
    hidden partial file stays (no class folder), and the rerun asks for the rest with a Range
    request and installs the class."""
    server, archive = bottle_server
    half = len(archive) // 2
    server.drop_after = half
    with pytest.raises(DataError) as info:
        MVTecAD(tmp_path, download=True).fetch(["bottle"])
    message = str(info.value)
    assert "\n" not in message and f"stopped after {half} of {len(archive)} bytes" in message
    assert "rerun the same command to resume" in message
    assert leftovers(tmp_path) == [".downloads", ".downloads/bottle.tar.xz.part"]
    assert (tmp_path / ".downloads" / "bottle.tar.xz.part").read_bytes() == archive[:half]

    MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert server.requests[-1] == ("/bottle.tar.xz", f"bytes={half}-")
    assert (tmp_path / "bottle" / "train" / "good" / "000.png").read_bytes() == _png(0)
    assert not (tmp_path / ".downloads").exists()


def test_resume_survives_a_server_that_ignores_range(bottle_server, tmp_path):
    """A server that answers a Range request with the whole file (200) must not get its bytes
    appended to the partial file: the download starts over and the checksum passes."""
    server, archive = bottle_server
    part = tmp_path / ".downloads" / "bottle.tar.xz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archive[:100])
    server.ignore_range = True
    MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert server.requests == [("/bottle.tar.xz", "bytes=100-")]
    assert (tmp_path / "bottle" / "test" / "broken" / "001.png").read_bytes() == _png(201)


def test_complete_partial_file_is_verified_without_refetching(bottle_server, tmp_path):
    """A killed run that had all the bytes: the server answers 416 and the file is used."""
    server, archive = bottle_server
    part = tmp_path / ".downloads" / "bottle.tar.xz.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(archive)
    MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert server.requests == [("/bottle.tar.xz", f"bytes={len(archive)}-")]
    assert (tmp_path / "bottle" / "license.txt").is_file()


def test_a_killed_extraction_does_not_look_like_data_and_is_redone(bottle_server, tmp_path):
    """What a run killed while unpacking leaves (a half staging folder) is invisible to the
    loader and cleared by the next download."""
    server, archive = bottle_server
    (tmp_path / ".downloads" / "bottle.tar.xz.part").parent.mkdir(parents=True)
    (tmp_path / ".downloads" / "bottle.tar.xz.part").write_bytes(archive)
    half = tmp_path / ".downloads" / "bottle.tar.xz.extract" / "bottle" / "train" / "good"
    half.mkdir(parents=True)
    (half / "000.png").write_bytes(b"half")
    assert MVTecAD(tmp_path).classes() == []
    MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert (tmp_path / "bottle" / "train" / "good" / "000.png").read_bytes() == _png(0)
    assert leftovers(tmp_path)[:1] == ["bottle"] and not (tmp_path / ".downloads").exists()


def test_wrong_checksum_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", "0" * 64)
        with pytest.raises(DataError) as info:
            MVTecAD(tmp_path, download=True).fetch(["bottle"])
    message = str(info.value)
    assert "\n" not in message and f"has sha256 {sha256(archive)}" in message
    assert "published one is " + "0" * 64 in message and "deleted it" in message
    assert leftovers(tmp_path) == []


def test_archive_without_published_checksum_warns_once_with_its_sha256(tmp_path, monkeypatch):
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", None)
        with pytest.warns(UserWarning) as caught:
            MVTecAD(tmp_path, download=True).fetch(["bottle"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert "no checksum" in messages[0] and sha256(archive) in messages[0]
    assert "not verified" in messages[0] and "HTTPS" not in messages[0]  # HTTPS checks no content
    assert (tmp_path / "bottle" / "train" / "good").is_dir()


def _member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "", size: int = 1) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    info.size = size if kind == tarfile.REGTYPE else 0
    return info


EVIL = {  # name: the unsafe member, given the test's tmp_path (so an escape lands where it is seen)
    "traversal": lambda tmp: _member("bottle/../../escaped.txt"),
    "absolute": lambda tmp: _member(str(tmp / "absolute-escape.txt")),
    "symlink-out": lambda tmp: _member("bottle/link", tarfile.SYMTYPE, "../../escaped.txt"),
    "absolute-symlink": lambda tmp: _member("bottle/abs-link", tarfile.SYMTYPE, "/etc/passwd"),
    "hardlink-out": lambda tmp: _member("bottle/hard", tarfile.LNKTYPE, "../../../etc/passwd"),
    "device": lambda tmp: _member("bottle/dev", tarfile.CHRTYPE),
}


@pytest.mark.parametrize("evil", EVIL)
def test_malicious_archive_is_refused_and_nothing_is_written(tmp_path, monkeypatch, evil):
    """The checksum matches (the table trusts this archive), yet the unsafe member is refused:
    one line, no class folder, no file anywhere under tmp_path, the archive deleted."""
    archive = tar_xz(class_files("bottle"), extra=[EVIL[evil](tmp_path)])
    root = tmp_path / "deep" / "er" / "root"
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", sha256(archive))
        with pytest.raises(DataError) as info:
            MVTecAD(root, download=True).fetch(["bottle"])
    message = str(info.value)
    assert "\n" not in message and "unsafe member" in message and "refused" in message
    assert leftovers(tmp_path) == ["deep", "deep/er"]  # root itself was made for the download


def test_damaged_archive_is_one_line_and_deleted(tmp_path, monkeypatch):
    """No published checksum and a truncated archive: extraction fails, nothing stays."""
    archive = tar_xz(class_files("bottle"))[:-200]
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", None)
        with pytest.warns(UserWarning, match="no checksum"), pytest.raises(DataError) as info:
            MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert "\n" not in str(info.value) and "archive bottle.tar.xz is damaged" in str(info.value)
    assert leftovers(tmp_path) == []


def test_archive_without_the_class_folder_is_refused(tmp_path, monkeypatch):
    archive = tar_xz(class_files("cable"))
    with Server({"/bottle.tar.xz": archive}) as server:
        point_table_at(monkeypatch, server, "bottle", sha256(archive))
        with pytest.raises(DataError, match=r"does not hold the folder bottle/"):
            MVTecAD(tmp_path, download=True).fetch(["bottle"])
    assert leftovers(tmp_path) == []


def test_http_error_is_one_line(bottle_server, tmp_path, monkeypatch):
    server, _ = bottle_server
    monkeypatch.setitem(mvtec_archives.PER_CLASS, "cable",
                        Archive("cable.tar.xz", f"{server.url}/missing.tar.xz", None, ("cable",)))
    with pytest.raises(DataError, match=r"cannot download .*/missing\.tar\.xz: HTTP 404"):
        MVTecAD(tmp_path, download=True).fetch(["cable"])
    assert leftovers(tmp_path) == []


def test_only_https_is_fetched_except_on_loopback(tmp_path, capsys):
    remote = Archive("bottle.tar.xz", "http://example.com/bottle.tar.xz", None, ("bottle",))
    with pytest.raises(DataError, match="only https URLs are fetched"):
        download.install(tmp_path / "root", [remote], "notice")
    assert capsys.readouterr().err == "" and not (tmp_path / "root").exists()


@pytest.mark.parametrize("target", ["http://example.com/bottle.tar.xz", "ftp://127.0.0.1/bottle.tar.xz",
                                    "file:///etc/passwd"])
def test_a_redirect_hop_that_is_not_https_is_refused(tmp_path, monkeypatch, target):
    """Every hop is checked, not just the first URL: the server's 302 to plain http on another
    host (or ftp, or a local file) is refused in one line before anything is fetched from it."""
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        server.redirects["/moved.tar.xz"] = target
        entry = Archive("bottle.tar.xz", f"{server.url}/moved.tar.xz", sha256(archive), ("bottle",))
        with pytest.raises(DataError) as info:
            download.install(tmp_path / "root", [entry], "notice")
    message = str(info.value)
    assert "\n" not in message and f"refusing to download {target} (a redirect from {server.url}/moved.tar.xz)" in message
    assert server.requests == [("/moved.tar.xz", None)] and not (tmp_path / "root").exists()


def test_a_redirect_to_an_accepted_url_is_followed(tmp_path):
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        server.redirects["/moved.tar.xz"] = f"{server.url}/bottle.tar.xz"
        entry = Archive("bottle.tar.xz", f"{server.url}/moved.tar.xz", sha256(archive), ("bottle",))
        download.install(tmp_path, [entry], "notice")
    assert (tmp_path / "bottle" / "license.txt").is_file()


@pytest.mark.parametrize("limit", ["low-speed", "overall"])
def test_a_trickling_server_is_cut_off_and_what_arrived_is_kept(tmp_path, limit):
    """A byte every 20 ms: the minimum speed (or the overall limit) stops the download in
    well under a second, the bytes that came stay in the partial file, and the rerun asks for
    the rest with a Range request."""
    archive = tar_xz(class_files("bottle"))
    timeouts = (download.Timeouts(read_s=5, min_bytes_per_s=1000, window_s=0.3) if limit == "low-speed"
                else download.Timeouts(read_s=5, overall_s=0.3))
    with Server({"/bottle.tar.xz": archive}) as server:
        server.trickle_s = 0.02
        entry = Archive("bottle.tar.xz", f"{server.url}/bottle.tar.xz", sha256(archive), ("bottle",))
        started = time.monotonic()
        with pytest.raises(DataError) as info:
            download.install(tmp_path, [entry], "notice", timeouts)
        assert time.monotonic() - started < 3
        kept = (tmp_path / ".downloads" / "bottle.tar.xz.part").read_bytes()
        assert 5 <= len(kept) < len(archive) and archive.startswith(kept)
        words = "slower than 1000 bytes/s" if limit == "low-speed" else "took longer than 0.3 s"
        assert "\n" not in str(info.value) and words in str(info.value)
        assert f"stopped after {len(kept)} bytes; rerun the same command to resume it" in str(info.value)
        server.trickle_s = None
        download.install(tmp_path, [entry], "notice", timeouts)
        assert server.requests[-1] == ("/bottle.tar.xz", f"bytes={len(kept)}-")
    assert (tmp_path / "bottle" / "license.txt").is_file() and not (tmp_path / ".downloads").exists()


def test_a_content_length_that_is_not_a_number_is_one_line(tmp_path):
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        server.headers["Content-Length"] = "abc"
        entry = Archive("bottle.tar.xz", f"{server.url}/bottle.tar.xz", sha256(archive), ("bottle",))
        with pytest.raises(DataError) as info:
            download.install(tmp_path / "root", [entry], "notice")
    assert str(info.value) == f"{server.url}/bottle.tar.xz answered with a Content-Length that is not a byte count ('abc')"
    assert not (tmp_path / "root").exists()


def test_concurrent_downloads_into_one_root_wait_for_each_other(tmp_path, capsys):
    """The second install into the same root waits while the first holds the lock (saying
    which process holds it), then finds the class installed and fetches nothing; neither fails
    on the other's work folder."""
    archive = tar_xz(class_files("bottle"))
    with Server({"/bottle.tar.xz": archive}) as server:
        entry = Archive("bottle.tar.xz", f"{server.url}/bottle.tar.xz", sha256(archive), ("bottle",))
        server.hold.clear()
        errors = []

        def install():
            try:
                download.install(tmp_path, [entry], "notice")
            except Exception as exc:  # reported below, in the test's thread
                errors.append(exc)

        first = threading.Thread(target=install)
        first.start()
        assert server.started.wait(5)
        second = threading.Thread(target=install)
        second.start()
        deadline = time.monotonic() + 5
        while "waiting for it to finish" not in capsys.readouterr().err and time.monotonic() < deadline:
            time.sleep(0.02)
        assert second.is_alive()
        server.hold.set()
        first.join(10)
        second.join(10)
    assert errors == [] and server.requests == [("/bottle.tar.xz", None)]
    assert (tmp_path / "bottle" / "license.txt").is_file() and not (tmp_path / ".downloads").exists()


def test_every_class_at_once_uses_the_complete_verified_archive():
    assert mvtec_archives.archives_for(list(KNOWN_CLASSES)) == [mvtec_archives.COMPLETE]
    assert mvtec_archives.archives_for(["bottle", "zipper"]) == [
        mvtec_archives.PER_CLASS["bottle"], mvtec_archives.PER_CLASS["zipper"]]


def test_the_table_covers_every_class_over_https():
    assert set(mvtec_archives.PER_CLASS) == set(KNOWN_CLASSES) == set(mvtec_archives.COMPLETE.folders)
    for name, archive in mvtec_archives.PER_CLASS.items():
        assert archive.url.startswith("https://") and archive.url.endswith(f"/{name}.tar.xz")
        assert archive.folders == (name,)
    assert re.fullmatch(r"[0-9a-f]{64}", mvtec_archives.COMPLETE.sha256)


def test_complete_archive_installs_every_class(tmp_path, monkeypatch):
    """The complete archive holds class folders side by side plus the licence files; only the
    class folders are installed."""
    files = {**class_files("bottle"), **class_files("cable"), "license.txt": b"CC\n", "readme.txt": b"r\n"}
    archive = tar_xz(files)
    with Server({"/all.tar.xz": archive}) as server:
        complete = Archive("all.tar.xz", f"{server.url}/all.tar.xz", sha256(archive), ("bottle", "cable"))
        monkeypatch.setattr(mvtec_archives, "COMPLETE", complete)
        MVTecAD(tmp_path, download=True).fetch(["cable", "bottle"])
        assert server.requests == [("/all.tar.xz", None)]
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["bottle", "cable"]


# ---------------------------------------------------------------------------------------------
# The default data root.


def _mvtec_class(root: Path, name: str = "bottle") -> None:
    for path, data in class_files(name).items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)


def test_default_root_prefers_xadbench_data_then_the_user_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    _mvtec_class(tmp_path / "cache" / "data" / "mvtec_ad", "cable")
    assert open_dataset("mvtec", None).classes() == ["cable"]
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "shared"))
    assert open_dataset("mvtec", None).classes() == ["cable"]  # $XADBENCH_DATA/mvtec_ad is absent
    _mvtec_class(tmp_path / "shared" / "mvtec_ad", "bottle")
    assert open_dataset("mvtec", None).classes() == ["bottle"]
    assert open_dataset("mvtec", str(tmp_path / "cache" / "data" / "mvtec_ad")).classes() == ["cable"]


def test_default_root_follows_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("XADBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _mvtec_class(tmp_path / "xdg" / "xadbench" / "data" / "mvtec_ad")
    assert open_dataset("mvtec", None).root == tmp_path / "xdg" / "xadbench" / "data" / "mvtec_ad"


def test_no_data_anywhere_names_every_place_and_download(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "data"))
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--dataset", "mvtec", "--out", str(tmp_path / "r")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(tmp_path / "data" / "mvtec_ad") in lines[0] and str(tmp_path / "cache" / "data" / "mvtec_ad") in lines[0]
    assert "--root" in lines[0] and "XADBENCH_DATA" in lines[0] and "--download" in lines[0]
    assert not (tmp_path / "r").exists()


def test_xadbench_data_unset_is_said(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"XADBENCH_DATA is not set") as info:
        open_dataset("cifar10", None)
    assert str(tmp_path / "cache" / "data" / "cifar10") in str(info.value)


def test_imagenet_says_it_cannot_be_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DataError, match="cannot be downloaded automatically") as info:
        open_dataset("imagenet30", None, download=True)
    assert "--download" not in str(info.value)


def test_download_without_data_targets_the_first_place(tmp_path, monkeypatch):
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    assert open_dataset("mvtec", None, download=True).root == tmp_path / "cache" / "data" / "mvtec_ad"
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "data"))
    assert open_dataset("mvtec", None, download=True).root == tmp_path / "data" / "mvtec_ad"
    assert not (tmp_path / "data").exists()  # nothing is created before something is fetched


def test_synthetic_keeps_its_own_cache(tmp_path, monkeypatch):
    from xadbench.datasets import synthetic

    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XADBENCH_DATA", str(tmp_path / "data"))
    assert open_dataset("synthetic", None).root == tmp_path / "cache" / synthetic.CACHE_NAME


@pytest.mark.realdata
def test_shared_mvtec_is_found_through_xadbench_data(shared_data, monkeypatch):
    monkeypatch.setenv("XADBENCH_DATA", str(shared_data))
    assert "bottle" in open_dataset("mvtec", None).classes()
