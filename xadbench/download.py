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

Only https URLs are fetched, and every hop of a redirect is checked the same way; plain http is
accepted for the loopback interface alone, which is how the tests serve their archives. A stalled
or crawling server is cut off by `Timeouts` (overall, and a minimum speed over a window), and the
bytes are written in small blocks as they arrive, so what came is kept for the resume. One
download runs per root at a time: a second `install` into the same root waits for the first
(saying which process holds it) and then skips what the first installed.
"""
from __future__ import annotations

import fcntl
import hashlib
import http.client
import lzma
import os
import shutil
import stat
import tarfile
import time
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
from xadbench.files import this_process

DOWNLOADS = ".downloads"
CHUNK = 1 << 20  # for hashing a file on disk
BLOCK = 1 << 16  # for writing what the network delivered: small, so a cut-off keeps it
HOLDER = "holder"  # in .downloads: the process (files.Owner) that holds the lock and since when
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


@dataclass(frozen=True)
class Timeouts:
    """When a download is given up (the partial file stays for the resume).

    read_s: the longest wait for any byte (also the connect timeout); overall_s: the longest a
    single archive may take; min_bytes_per_s over window_s: the slowest average speed accepted,
    measured over each window (a server trickling a byte now and then is cut off).
    """

    read_s: float = 60.0
    overall_s: float = 6 * 3600.0
    min_bytes_per_s: float = 1024.0
    window_s: float = 60.0


def _check_url(url: str, redirected_from: str | None = None) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK):
        return
    hop = f" (a redirect from {redirected_from})" if redirected_from else ""
    raise DataError(f"refusing to download {url}{hop}: only https URLs are fetched")


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows a redirect only to a URL `_check_url` accepts: an https download must not be
    sent on to plain http (or ftp, file...) by the server or anyone in between."""

    def http_error_302(self, req, fp, code, msg, headers):
        target = headers.get("Location") or headers.get("URI")
        if target:
            _check_url(urllib.parse.urljoin(req.full_url, target), redirected_from=req.full_url)
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


_opener = urllib.request.build_opener(_HttpsOnlyRedirects)


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
    return " ".join(text.split())


def _download(archive: Archive, part: Path, progress: Any, timeouts: Timeouts) -> None:
    """Fetch `archive` into `part`, continuing a partial file with an HTTP Range request.

    A dropped connection, a redirect to a URL that is not https, or a server slower than
    `timeouts` allow raises a one-line DataError and keeps `part`, so the same call resumes.
    """
    done = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "xadbench"}
    if done:
        headers["Range"] = f"bytes={done}-"
    task = progress.add_task(archive.name, total=None, completed=done)
    total = None
    try:
        with _opener.open(urllib.request.Request(archive.url, headers=headers), timeout=timeouts.read_s) as response:
            resumed = done > 0 and response.status == 206
            if resumed and not response.headers.get("Content-Range", "").startswith(f"bytes {done}-"):
                raise DataError(
                    f"{archive.url} answered a resume request at byte {done} with "
                    f"{response.headers.get('Content-Range')!r}; delete {part} and rerun"
                )
            if not resumed:
                done = 0  # the server sends the whole file: start over
            length = response.headers.get("Content-Length")
            if length is not None and not length.strip().isdigit():
                raise DataError(f"{archive.url} answered with a Content-Length that is not a byte count ({length!r})")
            total = done + int(length) if length is not None else None
            progress.update(task, total=total, completed=done)
            with part.open("ab" if resumed else "wb") as out:
                done = _copy(response, out, done, archive.url, timeouts, lambda n: progress.update(task, completed=n))
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


def _copy(response, out, done: int, url: str, timeouts: Timeouts, report) -> int:
    """Copy the response body to `out` block by block (each block flushed, so a cut-off keeps
    it) until the end, raising a DataError when `timeouts` run out; returns the bytes in `out`."""
    start = window_start = time.monotonic()
    window_bytes = 0
    while block := response.read1(BLOCK):
        out.write(block)
        out.flush()
        done += len(block)
        window_bytes += len(block)
        report(done)
        now = time.monotonic()
        if now - start > timeouts.overall_s:
            raise DataError(
                f"download of {url} took longer than {timeouts.overall_s:g} s and was stopped after "
                f"{done} bytes; rerun the same command to resume it"
            )
        if now - window_start >= timeouts.window_s:
            if window_bytes < timeouts.min_bytes_per_s * (now - window_start):
                raise DataError(
                    f"download of {url} was slower than {timeouts.min_bytes_per_s:g} bytes/s for "
                    f"{now - window_start:.0f} s and was stopped after {done} bytes; rerun the same "
                    "command to resume it"
                )
            window_start, window_bytes = now, 0
    return done


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
            f"{archive.name}: its publisher gives no checksum, so its integrity is not verified "
            f"(compare the sha256 of the file received with another copy: {actual})",
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


def _holder(workdir: Path) -> str:
    try:
        return (workdir / HOLDER).read_text().strip() or "another process"
    except OSError:
        return "another process"


def _lock(root: Path) -> int:
    """Take the exclusive lock on `root` (flock on the folder itself, so nothing extra is
    left in it), waiting for a download into the same root that holds it; returns the file
    descriptor to release."""
    descriptor = os.open(root, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        console.print(f"another download into {root} is running ({_holder(root / DOWNLOADS)}); waiting for it to finish",
                      markup=False, highlight=False, soft_wrap=True)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
    return descriptor


def install(root: Path, archives: Sequence[Archive], notice: str, timeouts: Timeouts = Timeouts()) -> None:
    """Download, verify and extract each archive, then rename its folders into `root`.

    `notice` (e.g. the licence) is printed once before the first download. Folders already in
    `root` are left as they are, and an archive whose folders are all there (installed by a
    concurrent download this one waited for) is not fetched.
    """
    if not archives:
        return
    for archive in archives:
        _check_url(archive.url)
    workdir = root / DOWNLOADS
    made_root = not root.exists()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create {root} to download into ({type(exc).__name__}: {_reason(exc)})") from None
    descriptor = _lock(root)
    try:
        root.mkdir(parents=True, exist_ok=True)  # a failed download we waited for removed the root it made
        missing = [a for a in archives if not all((root / folder).is_dir() for folder in a.folders)]
        if missing:
            _install_locked(root, workdir, missing, notice, timeouts)
    finally:
        if workdir.is_dir() and not any(workdir.iterdir()):
            workdir.rmdir()
        if made_root and not any(root.iterdir()):
            root.rmdir()  # a failed first download must not leave a root that looks like data
        os.close(descriptor)  # releases the lock


def _install_locked(root: Path, workdir: Path, archives: Sequence[Archive], notice: str, timeouts: Timeouts) -> None:
    try:
        workdir.mkdir(exist_ok=True)
        (workdir / HOLDER).write_text(f"{this_process()}, since {time.strftime('%H:%M:%S')}\n")
    except OSError as exc:
        raise DataError(f"cannot create {workdir} to download into ({type(exc).__name__}: {_reason(exc)})") from None
    console.print(notice, markup=False, highlight=False, soft_wrap=True)
    try:
        with progress_display() as progress:
            for archive in archives:
                part = workdir / f"{archive.name}.part"
                _download(archive, part, progress, timeouts)
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
        (workdir / HOLDER).unlink(missing_ok=True)
