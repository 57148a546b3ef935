"""A run folder: its results store (results.sqlite, exported to results.csv), config.json, and
one predictions file (predictions/<job_id>.npz) and checkpoint (checkpoints/<job_id>.pt) per
finished job; how they are written, read back and checked. Reports read runs through this module
alone.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from xadbench import heatmaps
from xadbench.errors import XadError
from xadbench.files import append_json, atomic_write, remove_stale_temporaries
from xadbench.metrics.registry import get_metric, list_metrics
from xadbench.registry import methods
from xadbench.store import ResultStore

if TYPE_CHECKING:
    from xadbench.method import Method

RESULT_COLUMNS = [
    "job_id", "dataset", "class", "method", "seed", "preset", "image_size", "protocol", "blur", "metric", "value",
    "oe", "oe_limit", "oe_exclude", "k", "weights", "n_train", "n_test", "fit_s", "predict_s", "sanity_s", "params",
    "threads", "device",
]


#: Result columns read back as text (values such as 8 or 'all', 1 or '').
TEXT_COLUMNS = ("oe", "oe_limit", "oe_exclude", "k")


def _declared_range(metric: str) -> tuple[float, float] | None:
    return get_metric(metric).range if metric in list_metrics() else None


def results_store(run_dir: Path) -> ResultStore:
    """The results store of a run folder: <run>/results.sqlite, exported to <run>/results.csv;
    a results.csv imported alone has each value checked against its metric's declared range."""
    return ResultStore(run_dir, RESULT_COLUMNS, text_columns=TEXT_COLUMNS, value_range=_declared_range)


def write_config(out: Path, config: dict[str, Any]) -> None:
    """Add one invocation to <out>/config.json (a list: every invocation is kept), creating the
    run folder and its results store where missing."""
    store = results_store(out).open()
    with store.locked():
        append_json(Path(out) / "config.json", {**config, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                "pid": os.getpid()})


def read_results(run_dir: Path) -> pd.DataFrame:
    """Every results row of a run folder (from its store; a folder written before there was a
    store is read from its checked results.csv); an empty frame where there are none."""
    return results_store(run_dir).read()


def finished_jobs(run_dir: Path) -> set[str]:
    """The ids of the jobs whose rows are in the run folder's store."""
    return set(results_store(run_dir).finished())


def replace_results(run_dir: Path, job_id: str, rows: list[dict[str, Any]]) -> None:
    """Replace every row of one finished job by `rows` in one transaction, then export results.csv."""
    store = results_store(run_dir)
    store.replace_job(job_id, rows)
    store.export_csv()


def save_predictions(path: Path, predictions: dict[str, np.ndarray]) -> None:
    with atomic_write(path, "wb") as handle:
        np.savez_compressed(handle, **predictions)


def save_checkpoint(path: Path, checkpoint: dict[str, Any]) -> None:
    with atomic_write(path, "wb") as handle:
        torch.save(checkpoint, handle)


def load_checkpoint(path: str | Path, device: str | None = None) -> Method:
    """The fitted method of a job from <run>/checkpoints/<job_id>.pt, read with
    torch.load(weights_only=True) (tensors and plain values only, no code runs); `device`
    overrides the one it was fitted with."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        name, state = checkpoint["method"], checkpoint["state"]
    except FileNotFoundError:
        raise XadError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch.load raises many types for a bad file
        raise XadError(f"{path}: not a readable xadbench checkpoint ({type(exc).__name__}: {exc})") from None
    if device is not None and "device" in state.get("params", {}):
        state = {**state, "params": {**state["params"], "device": device}}
    plugin = methods.get(name)
    try:
        return plugin.from_checkpoint(state)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:  # e.g. an older version's state
        raise XadError(f"{path}: a {name!r} checkpoint this version cannot load ({type(exc).__name__}: {exc})") from None


#: What run_job saves per job ("mask" too where the test set has masks, and the annotations of
#: the job's data transform).
PREDICTION_KEYS = ("score", "anomaly_map", "label", "key", "category", "image", "postprocessor", "profile")
#: How files written before the post-processor was recorded by name describe it.
LEGACY_POSTPROCESSOR_KEYS = ("method_smooth", "blur_size", "blur_sigma")


def spec_digest(spec_text: str) -> str:
    """The sha256 of a predictions file's `spec` text, saved beside it as `spec_digest`."""
    return hashlib.sha256(spec_text.encode()).hexdigest()


def identity_arrays(job_id: str, spec_text: str) -> dict[str, np.ndarray]:
    """What ties a predictions file to its job: the job id, the spec and the spec's digest."""
    return {"job_id": np.array(job_id), "spec": np.array(spec_text), "spec_digest": np.array(spec_digest(spec_text))}


def filing_problem(path: Path, arrays: Any) -> str | None:
    """What is wrong with where a predictions file `predictions/<job_id>.npz` is filed: it holds
    another job's predictions (a file copied or renamed into the wrong place would otherwise be
    reported as this job's), or its spec no longer matches its digest; None when neither.
    `arrays`: the opened file or its dict. A file of an older xadbench without these records
    names its job in its spec alone."""
    names = set(arrays.files if hasattr(arrays, "files") else arrays)
    spec = json.loads(str(arrays["spec"])) if "spec" in names else {}
    if "spec_digest" in names and spec_digest(str(arrays["spec"])) != str(arrays["spec_digest"]):
        return "its spec does not match its digest (the file was edited)"
    recorded = str(arrays["job_id"]) if "job_id" in names else spec.get("job_id")
    if recorded and recorded != Path(path).stem:
        return (f"holds the predictions of job {recorded} ({spec.get('method')} on {spec.get('class_name')}), "
                f"not of job {Path(path).stem} it is filed under")
    return None


def check_filed(path: Path, arrays: Any) -> None:
    """`filing_problem` as one line naming the file."""
    problem = filing_problem(path, arrays)
    if problem:
        raise XadError(f"{path}: {problem}; delete it and rerun the job")


def load_predictions(path: Path, required: Sequence[str] = PREDICTION_KEYS) -> dict[str, np.ndarray]:
    """A saved predictions file; one line naming the file when it cannot be read, it is filed
    under another job (`check_filed`) or a `required` array is missing. A file of an older xadbench that recorded the blur's parameters as separate
    arrays gets its post-processor record from them."""
    try:
        with np.load(path, allow_pickle=False) as data:
            predictions = {key: data[key] for key in data.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        raise XadError(f"{path}: unreadable predictions ({type(exc).__name__}: {exc}); "
                       f"delete it and rerun the job") from None
    check_filed(Path(path), predictions)
    if "postprocessor" not in predictions and all(k in predictions for k in LEGACY_POSTPROCESSOR_KEYS):
        legacy = heatmaps.PostProcessor(size=int(predictions["blur_size"]), sigma=float(predictions["blur_sigma"]),
                                        maps_smoothed=bool(predictions["method_smooth"]))
        predictions["postprocessor"] = np.array(legacy.record())
    missing = [key for key in required if key not in predictions]
    if missing:
        raise XadError(f"{path}: predictions without {', '.join(missing)} (written by an older xadbench); "
                       f"rerun the job into a new --out")
    return predictions


def verify_predictions(path: Path) -> None:
    """Read a predictions file in full (every array decompressed and its checksum compared)
    and check it holds PREDICTION_KEYS (or an older file's post-processor arrays) and is filed
    under its own job (`filing_problem`); XadError saying what is wrong otherwise."""
    if not path.is_file():
        raise XadError("missing")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = {name.removesuffix(".npy") for name in archive.namelist()}
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise XadError(f"unreadable ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise XadError(f"unreadable (array {bad!r} fails its checksum)")
    with np.load(path, allow_pickle=False) as arrays:
        problem = filing_problem(path, arrays)
    if problem:
        raise XadError(problem)
    if names.issuperset(LEGACY_POSTPROCESSOR_KEYS):
        names.add("postprocessor")
    missing = [key for key in PREDICTION_KEYS if key not in names]
    if missing:
        raise XadError(f"without {', '.join(missing)} (written by an older xadbench)")


def verify_checkpoint(path: Path) -> None:
    if not path.is_file():
        raise XadError("missing")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a bad file
        raise XadError(f"unreadable ({type(exc).__name__}: {exc})") from None


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a run folder; `job_id` names the job the next run reruns for it;
    `stale_export`: results.csv differs from the store (the next run exports it again)."""

    message: str
    job_id: str | None = None
    stale_export: bool = False


def check_run(run_dir: Path) -> list[Problem]:
    """What is wrong with a run folder, one line each: the results store (SQLite's integrity
    check, values that are not numbers, a results.csv of an older xadbench that cannot be
    imported, a results.csv that differs from the store), and per finished job, a predictions
    file or checkpoint that is missing, cannot be read in full or is filed under another job.
    Reads only."""
    run_dir = Path(run_dir)
    store = results_store(run_dir)
    problems = [Problem(line) for line in store.problems()]
    if problems:
        return problems
    stale = store.export_problem()
    if stale:
        problems.append(Problem(stale, stale_export=True))
    for job_id, has_checkpoint in store.finished().items():
        files = [("predictions", f"{job_id}.npz", verify_predictions)]
        checkpoint = run_dir / "checkpoints" / f"{job_id}.pt"
        if has_checkpoint or (has_checkpoint is None and checkpoint.is_file()):  # None: imported from a CSV
            files.append(("checkpoints", checkpoint.name, verify_checkpoint))
        for folder, name, verify in files:
            path = run_dir / folder / name
            try:
                verify(path)
            except XadError as exc:
                problems.append(Problem(f"{path}: {exc}; `xadbench run` reruns job {job_id}", job_id))
                break
    return problems


def prepare_run(out: Path) -> ResultStore:
    """Open (or create) a run folder's store before the first job: remove the temporary files
    of killed writers, refuse a damaged store, forget the jobs whose predictions or checkpoint
    are missing or unreadable (one warning each; they run again) and export results.csv."""
    store = results_store(out).open()
    remove_stale_temporaries(Path(out))
    problems = check_run(out)
    for problem in problems:
        if problem.job_id is None and not problem.stale_export:
            raise XadError(problem.message)
        warnings.warn(problem.message, stacklevel=2)
    store.drop_jobs({p.job_id for p in problems if p.job_id})
    store.export_csv()
    return store
