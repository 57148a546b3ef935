"""Decode once: the decoded, resized arrays of one class at one image size, kept on disk and shared
by every job and process of a grid (and by Ray workers on one node).

An entry is a folder of .npy files (uint8 images and whatever else the loader derives from the
files) under `<cache>/decoded/` (`xadbench.data_root.cache_home`, i.e. `$XADBENCH_CACHE` or the
user's cache folder), opened memory-mapped. Its name holds a fingerprint of the source files'
paths, sizes and modification times (and of the decoder, PIL's version), so a changed, added or
removed file makes a new entry and the class's older entries are deleted. Entries are written
to a temporary folder and renamed into place: a reader never sees half an entry, and when two
processes build the same entry at once, one rename wins and the other copy is dropped. An entry
that cannot be read is rebuilt with a one-line warning.

`XADBENCH_DECODE_CACHE=0` (or off, false, no) turns the cache off: every load decodes again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import PIL

from xadbench.data_root import cache_home
from xadbench.files import safe_name

#: Bump when what an entry holds changes, so old entries are not read.
FORMAT = 1
SWITCH = "XADBENCH_DECODE_CACHE"
OFF_VALUES = ("0", "off", "false", "no")
#: Lists the arrays of a complete entry; written last, so its presence marks the entry complete.
INDEX = "index.json"


def enabled() -> bool:
    return os.environ.get(SWITCH, "1").strip().lower() not in OFF_VALUES


def cache_folder() -> Path:
    return cache_home() / "decoded"


def fingerprint(files: Sequence[Path], salt: str) -> str:
    """sha256 over `salt`, the decoder's version and every file's absolute path, size and
    modification time (ns)."""
    digest = hashlib.sha256(f"{FORMAT}|{PIL.__version__}|{salt}".encode("utf-8", "surrogateescape"))
    for path in files:
        stat = os.stat(path)
        # os.fsencode: a file name need not be UTF-8 (its bytes are hashed as the file system has them)
        digest.update(b"\n" + os.fsencode(Path(path).resolve()) + f"|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _read_entry(folder: Path) -> dict[str, np.ndarray]:
    names = json.loads((folder / INDEX).read_text())["arrays"]
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in names}


def _write_entry(folder: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write `arrays` into a temporary sibling folder and rename it to `folder`; if another process
    renamed its copy first, ours is deleted (both hold the same arrays)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        for name, array in arrays.items():
            np.save(temporary / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
        (temporary / INDEX).write_text(json.dumps({"arrays": sorted(arrays)}))
        try:
            os.rename(temporary, folder)
        except OSError:
            if not (folder / INDEX).is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def cached_arrays(kind: str, root: Path, class_name: str, image_size: int, files: Sequence[Path],
                  build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays `build()` makes from `files` (class `class_name` of the data set `kind` under
    `root`, at `image_size`), from the cache when an entry for exactly these files exists
    (memory-mapped, read-only), else built and stored; a new entry deletes the class's older
    ones. With the cache off, just `build()`."""
    if not enabled():
        return build()
    where = f"{kind}|{Path(root).resolve()}|{class_name}|{image_size}"
    place = hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    stem = f"{safe_name(class_name)}-{image_size}px-{place}"
    base = cache_folder() / safe_name(kind)
    folder = base / f"{stem}-{fingerprint(files, where)[:16]}"
    if (folder / INDEX).is_file():
        try:
            return _read_entry(folder)
        except Exception as exc:  # a damaged entry can fail in many ways; all mean "rebuild"
            warnings.warn(f"decode cache entry {folder} is damaged ({type(exc).__name__}: {exc}); "
                          "rebuilding it", stacklevel=2)
            shutil.rmtree(folder, ignore_errors=True)
    arrays = build()
    try:
        _write_entry(folder, arrays)
        for stale in base.glob(f"{stem}-*"):
            if stale != folder and not stale.name.startswith("."):
                shutil.rmtree(stale, ignore_errors=True)
        return _read_entry(folder)
    except OSError as exc:
        warnings.warn(f"decode cache: could not write {folder} ({exc}); continuing without the cache",
                      stacklevel=2)
        return arrays
