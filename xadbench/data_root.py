"""Where data lives when no root is given.

A data set that declares a `data_folder` is looked for, in order, in

1. `$XADBENCH_DATA/<data_folder>`, when XADBENCH_DATA is set;
2. `<cache>/data/<data_folder>`, where `<cache>` is `cache_home()`.

The first of these that exists is the root. With `download` and none existing, the first is the
root, and the data set fetches its files there.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from xadbench.errors import DataError


def cache_home() -> Path:
    """xadbench's per-user cache: `$XADBENCH_CACHE`, else `xadbench` in the platform's per-user
    cache folder (`$XDG_CACHE_HOME` or ~/.cache on Linux, ~/Library/Caches on macOS,
    %LOCALAPPDATA% on Windows)."""
    if os.environ.get("XADBENCH_CACHE"):
        return Path(os.environ["XADBENCH_CACHE"])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        base = Path(os.environ["LOCALAPPDATA"])
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "xadbench"


def default_root(name: str, data_folder: str, can_download: bool, download: bool) -> Path:
    """The root of data set `name` (see the module docstring), or a one-line DataError naming
    every place looked at."""
    places = []
    if os.environ.get("XADBENCH_DATA"):
        places.append(Path(os.environ["XADBENCH_DATA"]) / data_folder)
    places.append(cache_home() / "data" / data_folder)
    for place in places:
        if place.is_dir():
            return place
    if download and can_download:
        return places[0]
    looked = ", ".join(map(str, places))
    if not os.environ.get("XADBENCH_DATA"):
        looked += f" ($XADBENCH_DATA/{data_folder} too, but XADBENCH_DATA is not set)"
    where = f"pass --root <folder>, set XADBENCH_DATA to a folder holding {data_folder}/"
    fetch = (
        f"{where}, or pass --download to fetch it into {places[0]}" if can_download
        else f"{where} (it cannot be downloaded automatically: its licence is accepted on its web site)"
    )
    raise DataError(f"data set {name!r} not found: no --root given, and none of {looked} exists; {fetch}")
