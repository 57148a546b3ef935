"""`xadbench evaluate`: score a finished run again without retraining.

Each job's predictions file records its JobSpec, so the job's test split is rebuilt exactly as
`run_job` built it (the same data, protocol, seed and k; masks at their own resolution), and the
job is scored by the runner's own `score_job`. With the job's checkpoint the fitted method is
restored and predicts again, which also gives the model checks (randomisation, deletion and
insertion) the method they need; without one the saved maps are scored (stored as float16) and
only the checks that need no model (the mean map) are computed.
"""
from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from xadbench import run_folder, runner, sanity
from xadbench.errors import XadError
from xadbench.heatmaps import PostProcessor
from xadbench.steps import DataTransform, ExtraMetric, from_declaration
from xadbench.types import Prediction, stack_images

#: Columns of a job's rows that re-scoring keeps as they were (how the job was fitted).
KEPT_COLUMNS = [c for c in run_folder.RESULT_COLUMNS if c not in ("blur", "metric", "value", "sanity_s")]
_TUPLE_FIELDS = ("blur", "oe_exclude")


def _without_spec(path: Path) -> XadError:
    return XadError(f"{path}: predictions without the job's spec (written before `xadbench evaluate` existed); "
                    "rerun the job into a new --out")


def saved_spec(predictions: dict[str, np.ndarray], path: Path) -> runner.JobSpec:
    """The JobSpec a predictions file records (its declared steps built again)."""
    if "spec" not in predictions:
        raise _without_spec(path)
    values: dict[str, Any] = json.loads(str(predictions["spec"]))
    known = {f.name for f in fields(runner.JobSpec)}
    values = {k: v for k, v in values.items() if k in known}
    for name in _TUPLE_FIELDS:
        values[name] = tuple(values[name])
    values["params"] = tuple((k, v) for k, v in values["params"])
    if values.get("transform") is not None:
        values["transform"] = from_declaration(values["transform"], DataTransform, str(path))
    values["metrics"] = tuple(from_declaration(m, ExtraMetric, str(path)) for m in values.get("metrics", ()))
    return runner.JobSpec(**values)


def rescore_job(predictions_path: Path, checkpoint_path: Path, *, device: str = "auto",
                with_sanity: bool | None = None) -> tuple[runner.JobSpec, list[tuple[str, str, float]], float]:
    """(spec, (blur, metric, value) rows, seconds of sanity checks) of one saved job; the sanity
    checks are scored when `with_sanity`, or when None as the run scored them."""
    saved = run_folder.load_predictions(predictions_path)
    spec = saved_spec(saved, predictions_path)
    spec = replace(spec, sanity=spec.sanity if with_sanity is None else with_sanity, device=device)
    data = runner.load_job_data(spec)
    train, test = data.train, data.test
    if [s.key for s in test] != [str(k) for k in saved["key"]]:
        raise XadError(f"{predictions_path}: the test split of {spec.dataset}/{spec.class_name} is not the one the "
                       "run scored (the data changed since); rerun the job")
    images = stack_images(test)
    method = run_folder.load_checkpoint(checkpoint_path, device) if checkpoint_path.is_file() else None
    if method is None:
        prediction = Prediction(saved["score"].astype(np.float32), saved["anomaly_map"].astype(np.float32))
        if spec.sanity:
            warnings.warn(f"{spec.method} on {spec.class_name} (job {spec.job_id}): no checkpoint, so no model "
                          "randomisation or deletion/insertion; scoring the saved maps", UserWarning, stacklevel=2)
    else:
        prediction = method.predict(images)
    reference = sanity.nominal_reference(stack_images(train.nominal))
    process = PostProcessor.from_record(saved["postprocessor"], predictions_path)
    metrics, sanity_s = runner.score_job(spec, prediction, test, process, method, images, reference, data.annotations)
    return spec, metrics, sanity_s


def rescore_run(run_dir: Path, *, device: str = "auto", with_sanity: bool | None = None,
                on_job: Callable[[str, str, str], None] | None = None) -> int:
    """Score every job of RUN_DIR's results store that has saved predictions again and replace its
    rows (one transaction per job, so an interrupted call loses nothing); returns how many jobs.
    on_job(job_id, method, class) is called before each."""
    path = run_folder.results_store(run_dir).path
    if not path.is_file():
        raise XadError(f"{path} not found; pass the folder `xadbench run` wrote (its --out)")
    results = run_folder.read_results(run_dir)
    if results.empty:
        raise XadError(f"{path} has no results yet")
    jobs = results.drop_duplicates("job_id")
    for job_id in jobs["job_id"].astype(str):  # every saved spec checked before any job is scored
        predictions = Path(run_dir) / "predictions" / f"{job_id}.npz"
        if predictions.is_file():
            with np.load(predictions, allow_pickle=False) as saved:
                if "spec" not in saved.files:
                    raise _without_spec(predictions)
                run_folder.check_filed(predictions, saved)
    done = 0
    for _, job in jobs.iterrows():
        job_id = str(job["job_id"])
        predictions = Path(run_dir) / "predictions" / f"{job_id}.npz"
        if not predictions.is_file():
            warnings.warn(f"job {job_id} ({job['method']} on {job['class']}): no saved predictions; its rows are "
                          "kept as they are", UserWarning, stacklevel=2)
            continue
        if on_job is not None:
            on_job(job_id, str(job["method"]), str(job["class"]))
        _, metrics, sanity_s = rescore_job(predictions, Path(run_dir) / "checkpoints" / f"{job_id}.pt",
                                           device=device, with_sanity=with_sanity)
        kept = {c: job[c] for c in KEPT_COLUMNS if c in job}
        rows = [{**kept, "blur": blur, "metric": metric, "value": value, "sanity_s": sanity_s}
                for blur, metric, value in metrics]
        run_folder.replace_results(run_dir, job_id, rows)
        done += 1
    return done
