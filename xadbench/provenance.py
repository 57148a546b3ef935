"""What was run, where and with what: recorded once per invocation of `xadbench run` into the run
folder's config.json (key "provenance"), and shown by the HTML report.

Everything here is read from the running process and its machine; nothing is guessed. A value
that cannot be found (no git checkout, no GPU) is recorded as None rather than left out, so a
reader sees that it was looked for.
"""
from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from xadbench.backbones import sha256_of

PACKAGE_DIR = Path(__file__).resolve().parent


def now() -> str:
    """The current time in UTC, ISO 8601 to the second."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def xadbench_version() -> str:
    try:
        return metadata.version("xadbench")
    except metadata.PackageNotFoundError:
        from xadbench import __version__

        return __version__


def git_commit(directory: Path = PACKAGE_DIR) -> str | None:
    """The commit of the checkout the package runs from ("<hash>+dirty" with local changes), or
    None outside a git checkout or without git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return commit + ("+dirty" if dirty else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return round(pages * size / 2**30, 1)


def hardware() -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {
        "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "memory_gib": memory_gib(), "gpus": gpus,
        "host": socket.gethostname(), "os": platform.platform(),
    }


def weights_record(weights: str | None, pretrained: bool) -> dict[str, Any]:
    """The weights file and its sha256 (the full hash: results rows carry a 12-digit prefix)."""
    if weights:
        return {"path": str(Path(weights).resolve()), "sha256": sha256_of(weights)}
    return {"path": None, "sha256": None, "source": "torchvision ImageNet weights" if pretrained else "random init"}


def collect(argv: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """The provenance of one invocation: command line, the options it resolved to, versions, git
    commit, device and hardware, the start time, and the weights with their hash."""
    device = options.get("device", "auto")
    return {
        "command": "xadbench " + " ".join(argv),
        "cwd": os.getcwd(),
        "started_at": now(),
        "xadbench": xadbench_version(),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "hardware": hardware(),
        "weights": weights_record(options.get("weights"), options.get("pretrained", True)),
        # One data set's root, or the list of them for a run over several.
        "data_root": ([str(Path(r).resolve()) for r in options["root"]] if isinstance(options.get("root"), list)
                      else str(Path(options["root"]).resolve()) if options.get("root") else None),
        "executable": sys.executable,
    }
