"""Files that readers never see half-written, and the process identity that tells a killed
writer's leftovers from a live writer's files.

`atomic_write` writes beside the target and renames; `remove_stale_temporaries` deletes what a
killed writer left; `append_json` adds an entry to a JSON list file atomically. `Owner` and
`process_alive` identify a process across PID reuse; the results store's job claims use them too.
"""
from __future__ import annotations

import json
import hashlib
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xadbench.errors import XadError


# ---- processes --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Owner:
    """A process: host name, PID and (on Linux) its start time in clock ticks since boot, so a
    PID the kernel has given to a new process does not count as the old one."""

    host: str
    pid: int
    start: str

    def __str__(self) -> str:
        return f"PID {self.pid}" + ("" if self.host == socket.gethostname() else f" on {self.host}")


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from /proc/PID/stat, None where there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the command name in (...) may hold spaces
    return fields[0], fields[19]


def this_process() -> Owner:
    stat = _proc_stat(os.getpid())
    return Owner(socket.gethostname(), os.getpid(), stat[1] if stat else "")


def process_alive(owner: Owner) -> bool:
    """Whether `owner` still runs. A process on another host cannot be asked and counts as
    alive; on this host a PID that is gone, a zombie, or a PID reused by a process started at
    another time count as dead."""
    if owner.host != socket.gethostname():
        return True
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    stat = _proc_stat(owner.pid)
    if stat is None:
        return True
    state, start = stat
    return state not in ("Z", "X") and (not owner.start or start == owner.start)


# ---- atomic files -----------------------------------------------------------------------------
#: Temporary files of atomic_write: .<name>.<pid>.<random>.tmp beside the file they replace.
TEMPORARY = re.compile(r"^\..+\.(\d+)\.[^.]+\.tmp$")


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside `path`, then rename: readers see the old or the new
    file, never a half-written one. The temporary file's name holds the writer's PID, so a
    later run can tell a killed writer's leftover from a live writer's file. The file gets the
    permissions of a plainly created one (0666 less the umask), not mkstemp's owner-only 0600,
    so a shared run folder stays readable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files of atomic_write under `folder` whose writer no longer runs
    (or, without a PID in the name, that an older xadbench left); returns what was deleted."""
    removed = []
    for path in Path(folder).rglob(".*.tmp"):
        match = TEMPORARY.match(path.name)
        pid = int(match.group(1)) if match else None
        if pid is not None and (pid == os.getpid() or process_alive(Owner(socket.gethostname(), pid, ""))):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def append_json(path: Path, entry: dict[str, Any]) -> None:
    """Add `entry` to the JSON list in `path` (atomically); a file holding one object (written
    by an older xadbench) becomes the list's first entry."""
    previous: list[Any] = []
    if path.is_file():
        try:
            loaded = json.loads(path.read_text() or "[]")
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise XadError(f"{path}: not readable JSON ({exc}); move it aside and rerun") from None
        previous = loaded if isinstance(loaded, list) else [loaded]
    with atomic_write(path) as handle:
        json.dump([*previous, entry], handle, indent=2, default=str)


#: The longest name `safe_name` gives: room for a temporary file's prefix and suffix
#: (atomic_write: .<name>.<pid>.<random>.tmp) within a file system's 255 bytes.
NAME_LIMIT = 100


def safe_name(text: str) -> str:
    """A file name for `text` (a class, data set or method name: data, not a path): `text`
    itself when it is safe on every file system (letters, digits, _ . -) and at most NAME_LIMIT
    characters; otherwise its safe characters (runs of others as "-"), cut to fit, plus 10 hex
    digits of its sha256, so unsafe names that clean to the same text (x<1, x>1) still differ."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)
    if clean == text and len(text) <= NAME_LIMIT and text not in (".", ".."):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{clean[:NAME_LIMIT - 11]}-{digest}"
