"""Fetching a data set's archives: resumable HTTPS download, sha256 check, safe extraction.

`install` downloads each archive into `<root>/.downloads/<name>.part` (a killed or dropped
download resumes there with an HTTP Range request), checks its sha256 against the published
value, extracts it with tarfile's "data" filter (no `..`, no links out of the target, no device
files; absolute names are refused rather than made relative; a zip archive by the same rules)
into
`<root>/.downloads/<name>.extract`, checks that every folder the archive should hold is there,
and only then renames those folders into `root`. A data set folder therefore appears whole or
not at all; the hidden `.downloads` folder is all an interruption leaves behind (a partial
download to resume, or a staging folder the next run clears), and it is removed once everything
is installed.

Only https URLs are fetched; plain http is accepted for the loopback interface alone, which is
how the tests serve their archives.
"""
from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from xadbench.errors import DataError

DOWNLOADS = ".downloads"
CHUNK = 1 << 20
TIMEOUT_S = 60
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

console = Console(stderr=True)


class NoDisplay:
    """Shows no download progress: the library's default (the command line sets rich's bars)."""

    def __enter__(self) -> "NoDisplay":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def add_task(self, description: str, total: int | None = None, completed: int = 0) -> int:
        return 0

    def update(self, task: int, total: int | None = None, completed: int = 0) -> None:
        pass


#: Makes the display of the downloads' progress: a context manager with the `add_task` and
#: `update` of rich.progress.Progress. `xadbench run` sets rich's bars (xadbench.cli.console).
progress_display: Callable[[], Any] = NoDisplay


@dataclass(frozen=True)
class Archive:
    """One published archive.

    name: its file name (bottle.tar.xz); url: where it is published; sha256: the published
    checksum, or None where the publisher gives none (it is then fetched with a one-line warning
    that names the sha256 it had); folders: the top-level folders it holds that get installed.
    """

    name: str
    url: str
    sha256: str | None
    folders: tuple[str, ...]


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return
    raise DataError(f"refusing to download {url}: only https URLs are fetched")


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    return " ".join(text.split())


def _download(archive: Archive, part: Path, progress: Any) -> None:
    """Fetch `archive` into `part`, continuing a partial file with an HTTP Range request.

    A dropped connection raises a one-line DataError and keeps `part`, so the same call resumes.
    """
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "xadbench"}
    if done:
        headers["Range"] = f"bytes={done}-"
    task = progress.add_task(archive.name, total=None, completed=done)
    total = None
    try:
        with urllib.request.urlopen(urllib.request.Request(archive.url, headers=headers), timeout=TIMEOUT_S) as response:
            resumed = done > 0 and response.status == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {done}-"):
                raise DataError(
                    f"{archive.url} answered a resume request at byte {done} with "
                    f"{response.headers.get('Content-Range')!r}; delete {part} and rerun"
                )
            if not resumed:
                done = 0  # the server sends the whole file: start over
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            progress.update(task, total=total, completed=done)
            with part.open("ab" if resumed else "wb") as out:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    progress.update(task, completed=done)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and done:
            return  # nothing left to send: the partial file is complete; the checksum decides
        raise DataError(f"cannot download {archive.url}: HTTP {exc.code} {_reason(exc)}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        size = part.stat().st_size if part.exists() else 0
        raise DataError(
            f"download of {archive.url} stopped after {size} bytes ({type(exc).__name__}: "
            f"{_reason(exc)}); rerun the same command to resume it"
        ) from None
    if total is not None and done < total:
        raise DataError(
            f"download of {archive.url} stopped after {done} of {total} bytes (the server closed "
            "the connection); rerun the same command to resume it"
        )


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(archive: Archive, part: Path) -> None:
    """Compare `part` with the published sha256; a mismatch deletes it (a retry refetches)."""
    actual = _sha256_of(part)
    if archive.sha256 is None:
        warnings.warn(
            f"{archive.name}: its publisher gives no checksum, so it is checked only by HTTPS and "
            f"its contents; the file fetched has sha256 {actual}",
            stacklevel=2,
        )
    elif actual != archive.sha256:
        part.unlink()
        raise DataError(
            f"{archive.name} from {archive.url} has sha256 {actual}, but the published one is "
            f"{archive.sha256}: the download is corrupt or the file changed upstream; deleted it, "
            "rerun to fetch it again"
        )


def _strict_data_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """tarfile's "data" filter, except that an absolute name is refused rather than made
    relative: an archive that holds one was not made for extraction into a folder."""
    if member.name.startswith(("/", "\\")) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, path)


def _unzip(name: str, part: Path, target: Path) -> None:
    """Unpack a zip archive (BTAD's) with the rules of the tar "data" filter: a member named by
    an absolute path or with `..`, or a symbolic link, refuses the whole archive (zipfile
    itself would only rewrite such names)."""
    with zipfile.ZipFile(part) as archive:
        for member in archive.infolist():
            path = member.filename.replace("\\", "/")
            if path.startswith("/") or ".." in path.split("/") or (len(path) > 1 and path[1] == ":"):
                raise DataError(f"archive {name} has an unsafe member ({member.filename!r} "
                                "leaves the target folder); refused it and deleted it")
            if stat.S_ISLNK(member.external_attr >> 16):
                raise DataError(f"archive {name} has an unsafe member ({member.filename!r} is a "
                                "symbolic link); refused it and deleted it")
        archive.extractall(target)


def _extract(archive: Archive, part: Path, target: Path) -> None:
    """Unpack `part` (a tar archive, any compression, or a zip archive) into the empty folder
    `target` with tarfile's "data" filter (zip: the same rules, `_unzip`) and check that each of
    `archive.folders` is there. Any failure deletes `target` and `part`: an archive that is
    unsafe or incomplete stays so on a second try."""
    try:
        if zipfile.is_zipfile(part):
            _unzip(archive.name, part, target)
        else:
            with tarfile.open(part) as tar:
                tar.extractall(target, filter=_strict_data_filter)
        missing = [f for f in archive.folders if not (target / f).is_dir()]
        if missing:
            raise DataError(f"archive {archive.name} does not hold the folder {missing[0]}/; deleted it")
    except tarfile.FilterError as exc:
        problem = DataError(f"archive {archive.name} has an unsafe member ({_reason(exc)}); refused it and deleted it")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, lzma.LZMAError, zlib.error, OSError) as exc:
        problem = DataError(
            f"archive {archive.name} is damaged ({type(exc).__name__}: {_reason(exc)}); deleted "
            "it, rerun to fetch it again"
        )
    except DataError as exc:
        problem = exc
    else:
        return
    shutil.rmtree(target, ignore_errors=True)
    part.unlink(missing_ok=True)
    raise problem


def install(root: Path, archives: Sequence[Archive], notice: str) -> None:
    """Download, verify and extract each archive, then rename its folders into `root`.

    `notice` (e.g. the licence) is printed once before the first download. Folders already in
    `root` are left as they are.
    """
    if not archives:
        return
    for archive in archives:
        _check_url(archive.url)
    workdir = root / DOWNLOADS
    made_root = not root.exists()
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {workdir} to download into ({type(exc).__name__}: {_reason(exc)})") from None
    console.print(notice, markup=False, highlight=False, soft_wrap=True)
    try:
        with progress_display() as progress:
            for archive in archives:
                part = workdir / f"{archive.name}.part"
                _download(archive, part, progress)
                _verify(archive, part)
                staging = workdir / f"{archive.name}.extract"
                shutil.rmtree(staging, ignore_errors=True)  # what a killed extraction left
                staging.mkdir()
                _extract(archive, part, staging)
                for folder in archive.folders:
                    if not (root / folder).exists():
                        (staging / folder).rename(root / folder)
                shutil.rmtree(staging)
                part.unlink()
    finally:
        if not any(workdir.iterdir()):
            workdir.rmdir()
        if made_root and not any(root.iterdir()):
            root.rmdir()  # a failed first download must not leave a root that looks like data
