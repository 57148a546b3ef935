"""Jobs and the grid runner.

A job is (dataset, class, method, seed, preset, protocol, ...): self-contained and idempotent.
`run_job` takes its spec and returns its result rows and predictions without touching the run
folder, so a distributed engine can run the same job list across machines; `save_job_result`
stores one finished job (files, then its rows in one transaction of the results store,
xadbench.store) whatever ran it, and `finished_jobs` says which jobs a folder holds. `run_grid`
runs a grid on an executor (xadbench.executors: in this process, or as Ray tasks on a cluster)
and stores every finished job itself: it checks the folder first (`check_run`), claims each job
in the store before starting it, and skips finished jobs, so a killed run resumes and concurrent
runs share the work.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from xadbench import evaluator, heatmaps, protocols, sanity
from xadbench.anomalies import limit_outlier_exposure
from xadbench.data_root import default_root
from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.method import Method, resolve_device
from xadbench.profiles import Profile, check_preset, get_profile
from xadbench.registry import datasets, methods, plugin_call
from xadbench.store import CLAIMED, FINISHED, Owner, ResultStore, append_json, atomic_write, remove_stale_temporaries
from xadbench.types import Prediction, Sample, stack_images

BLUR_POLICIES = ("gaussian", "none")
#: Options of a run that reach a method only when its __init__ has a keyword of that name.
ROUTED_OPTIONS = ("device", "weights", "pretrained", "seed")

RESULT_COLUMNS = [
    "job_id", "dataset", "class", "method", "seed", "preset", "image_size", "protocol", "blur", "metric", "value",
    "oe", "oe_limit", "oe_exclude", "k", "weights", "n_train", "n_test", "fit_s", "predict_s", "sanity_s", "params",
    "threads", "device",
]


@dataclass(frozen=True)
class JobSpec:
    """Everything that determines a job's result. `job_id` hashes it together with the values of
    the method's preset for the data set's profile, so a preset retuned in code gives new ids and
    a rerun into the same folder does not mistake old results for current ones (the device
    excluded: a job finished on one device counts as finished on another)."""

    dataset: str
    class_name: str
    method: str
    seed: int = 0
    preset: str = "cpu"
    protocol: str = "unsupervised"
    root: str | None = None
    blur: tuple[str, ...] = ("gaussian",)
    weights: str | None = None
    pretrained: bool = True
    oe: str | None = None
    oe_root: str | None = None
    oe_limit: int | None = None
    oe_exclude: tuple[str, ...] = ()
    k: int = 1
    params: tuple[tuple[str, Any], ...] = ()
    device: str = field(default="auto", compare=False)
    download: bool = field(default=False, compare=False)
    sanity: bool = field(default=False, compare=False)  # also score xadbench.sanity's checks

    @property
    def job_id(self) -> str:
        key = {k: v for k, v in asdict(self).items() if k not in ("device", "download", "sanity")}
        profile = get_profile(dataset_profile(self.dataset, self.root))
        key["preset_values"] = methods.get(self.method).preset(self.preset, profile.name)
        # What the runner itself takes from the profile: image size and the shared blur.
        key["profile_values"] = [profile.image_size[self.preset], profile.sigma[self.preset], profile.receptive_field]
        return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class JobResult:
    rows: list[dict[str, Any]]
    predictions: dict[str, np.ndarray]
    checkpoint: dict[str, Any] | None = None  # {"method": name, "state": Method.checkpoint()}


def without_unused_outlier_exposure(spec: JobSpec) -> JobSpec:
    """The spec without its OE settings when its method learns from nominal images only
    (supervision "none", e.g. the AE): OE cannot change its result, so runs that differ only in
    OE share that method's job and a resumed run does not train it again."""
    if methods.get(spec.method).supervision != "none":
        return spec
    return replace(spec, oe=None, oe_root=None, oe_limit=None, oe_exclude=())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@functools.lru_cache(maxsize=None)
def dataset_profile(name: str, root: str | None) -> str:
    """A data set's profile: declared by its class, or (a folder tree, whose profile follows its
    image size) read from the opened data set."""
    if name in datasets.names():
        declared = datasets.get(name).profile
        if isinstance(declared, str):
            return declared
    return open_dataset(name, root).profile


def open_dataset(name: str, root: str | None, download: bool = False) -> Dataset:
    """A registered data set by name, or any folder-per-class tree given as a path. Without a
    root, a data set with a `data_folder` gets its default root (`xadbench.data_root`)."""
    if name not in datasets.names() and Path(name).is_dir():
        return datasets.create("folder", root=name, download=False)
    plugin = datasets.get(name)
    folder = getattr(plugin, "data_folder", None)  # plugins that predate it have none
    if root is None and folder is not None:
        root = str(default_root(name, folder, getattr(plugin, "can_download", False), download))
    return datasets.create(name, root=root, download=download)


def build_method(spec: JobSpec, profile: str) -> Method:
    plugin = methods.get(spec.method)
    params = dict(plugin.preset(spec.preset, profile))
    accepted = set(plugin.param_names())
    routed = {name: getattr(spec, name) for name in ROUTED_OPTIONS}
    params.update({k: v for k, v in routed.items() if k in accepted})
    for key, value in spec.params:
        if key not in accepted:
            raise XadError(f"method {spec.method!r} has no parameter {key!r}; it has: {', '.join(sorted(accepted))}")
        params[key] = value
    with plugin_call("method", spec.method, "__init__"):
        return plugin(**params)


def outlier_exposure(spec: JobSpec, image_size: int) -> Sequence[Sample]:
    if spec.oe is None:
        return ()
    # By default a registered name shares the run's root (torchvision keeps its sets side by side).
    source = open_dataset(spec.oe, spec.oe_root or spec.root, spec.download)
    samples = source.outlier_exposure(image_size, exclude=spec.oe_exclude)
    if len(samples) == 0:
        raise XadError(f"Outlier Exposure source {spec.oe!r} has no images left after exclusions")
    return limit_outlier_exposure(samples, spec.oe_limit, spec.seed)


def postprocess(maps: np.ndarray, blur: str, method_smooth: bool, size: int, sigma: float) -> np.ndarray:
    """The one post-processing policy: "gaussian" blurs every baseline's maps with FCDD's kernel
    (paper section 4: size = receptive field, σ of the upsampling); FCDD's own maps are already
    smoothed by its Gaussian upsampling and stay as they are. "none" leaves all maps raw."""
    if blur == "gaussian" and not method_smooth:
        return heatmaps.blur(maps, size, sigma)
    return maps


def evaluate(prediction: Prediction, test: Sequence[Sample]) -> dict[str, float]:
    labels = np.array([s.label for s in test])
    metrics = {evaluator.IMAGE_AUC: evaluator.image_auc(prediction.score, labels)}
    if all(s.mask is not None for s in test):
        maps = [heatmaps.resize_map(m, tuple(s.mask.shape)) for m, s in zip(prediction.anomaly_map, test)]
        masks = [s.mask.numpy() for s in test]
        metrics[evaluator.PIXEL_AUC] = evaluator.pixel_auc(maps, masks)
        metrics[evaluator.PER_IMAGE_PIXEL_AUC] = evaluator.per_image_pixel_auc(maps, masks)
    return metrics


def score_job(spec: JobSpec, prediction: Prediction, test: Sequence[Sample], profile: Profile,
              method_smooth: bool, method: Method | None = None, images: torch.Tensor | None = None,
              reference: torch.Tensor | None = None) -> tuple[list[tuple[str, str, float]], float]:
    """(blur, metric, value) for every blur policy of the job and every metric, with
    `xadbench.sanity`'s checks when `spec.sanity` (those that need the fitted `method`, its input
    `images` and the nominal `reference` only when given); and the seconds the checks took."""
    metrics, sanity_s = [], 0.0
    for blur in spec.blur:
        process = functools.partial(postprocess, blur=blur, method_smooth=method_smooth,
                                    size=profile.receptive_field, sigma=profile.sigma[spec.preset])
        scored = Prediction(prediction.score, process(prediction.anomaly_map))
        values = evaluate(scored, test)
        if spec.sanity:
            start = time.perf_counter()
            values.update(sanity.sanity_metrics(scored, test, evaluate, method, images, process, reference))
            sanity_s += time.perf_counter() - start
        metrics += [(blur, metric, value) for metric, value in values.items()]
    return metrics, round(sanity_s, 3)


def run_job(spec: JobSpec, on_epoch: Callable[[int, int, float], None] | None = None) -> JobResult:
    """Train and score one job; pure apart from reading data (no writes)."""
    check_preset(spec.preset)
    protocols.check_protocol(spec.protocol)
    dataset = open_dataset(spec.dataset, spec.root, spec.download)
    profile = get_profile(dataset.profile)
    image_size = profile.image_size[spec.preset]
    task = dataset.load(spec.class_name, image_size)
    train, test = protocols.prepare(task, spec.protocol, seed=spec.seed, k=spec.k,
                                    outlier_exposure=outlier_exposure(spec, image_size))
    seed_everything(spec.seed)
    method = build_method(spec, dataset.profile)
    start = time.perf_counter()
    with plugin_call("method", spec.method, "fit"):
        method.fit(protocols.restrict(train, method.supervision), on_epoch=on_epoch)
    fit_s = time.perf_counter() - start
    images = stack_images(test)
    start = time.perf_counter()
    with plugin_call("method", spec.method, "predict"):
        prediction = method.predict(images)
    predict_s = time.perf_counter() - start
    if not (np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all()):
        raise XadError(f"method {spec.method!r} produced non-finite scores or maps on {spec.dataset}/{spec.class_name}")

    common = {
        "job_id": spec.job_id, "dataset": spec.dataset, "class": spec.class_name, "method": spec.method,
        "seed": spec.seed, "preset": spec.preset, "image_size": image_size, "protocol": spec.protocol,
        "oe": spec.oe or "", "oe_limit": spec.oe_limit if spec.oe_limit is not None else ("all" if spec.oe else ""),
        "oe_exclude": ",".join(spec.oe_exclude),
        "k": spec.k if spec.protocol == "semi-supervised" else "",
        "weights": method.weights_used_,
        "n_train": len(train.nominal), "n_test": len(test), "fit_s": round(fit_s, 3), "predict_s": round(predict_s, 3),
        "params": json.dumps(method.get_params(), sort_keys=True, default=str),
        # CPU training is bit-identical only for a fixed thread count (reduction order), so
        # every row says which count and device produced it.
        "threads": torch.get_num_threads(), "device": str(resolve_device(spec.device)),
    }
    reference = sanity.nominal_reference(stack_images(train.nominal))
    metrics, sanity_s = score_job(spec, prediction, test, profile, method.receptive_field_maps, method, images,
                                  reference)
    rows = [{**common, "blur": blur, "metric": metric, "value": value, "sanity_s": sanity_s}
            for blur, metric, value in metrics]

    predictions = {
        "score": prediction.score.astype(np.float32),
        "anomaly_map": prediction.anomaly_map.astype(np.float16),
        "label": np.array([s.label for s in test], dtype=np.int8),
        "key": np.array([s.key for s in test]),
        "category": np.array([s.category for s in test]),
        "image": (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
        "method_smooth": np.array(method.receptive_field_maps),
        "blur_size": np.array(profile.receptive_field),
        "blur_sigma": np.array(profile.sigma[spec.preset]),
        "profile": np.array(profile.name),
        "spec": np.array(json.dumps(asdict(spec), default=str)),
    }
    if all(s.mask is not None for s in test):
        predictions["mask"] = np.stack([
            torch.nn.functional.interpolate(s.mask[None, None].float(), size=images.shape[-2:], mode="nearest")[0, 0].bool().numpy()
            for s in test
        ])
    with plugin_call("method", spec.method, "checkpoint"):
        state = method.checkpoint()
    return JobResult(rows, predictions, None if state is None else {"method": spec.method, "state": state})


#: Result columns read back as text (values such as 8 or 'all', 1 or '').
TEXT_COLUMNS = ("oe", "oe_limit", "oe_exclude", "k")


def results_store(run_dir: Path) -> ResultStore:
    """The results store of a run folder: <run>/results.sqlite, exported to <run>/results.csv."""
    return ResultStore(run_dir, RESULT_COLUMNS, text_columns=TEXT_COLUMNS)


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


def save_job_result(out: Path, job_id: str, result: JobResult) -> None:
    """Store one finished job: its checkpoint and predictions files (each written atomically),
    then its rows in one transaction of the results store, then results.csv exported. The one
    way results are written, whatever ran the job; a process killed at any point leaves the
    job's rows complete or absent (absent: the job runs again, its files are overwritten)."""
    out = Path(out)
    if result.checkpoint is not None:
        save_checkpoint(out / "checkpoints" / f"{job_id}.pt", result.checkpoint)
    save_predictions(out / "predictions" / f"{job_id}.npz", result.predictions)
    store = results_store(out)
    store.add_job(job_id, result.rows, checkpoint=result.checkpoint is not None)
    store.export_csv()


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


#: What run_job saves per job ("mask" too where the test set has masks).
PREDICTION_KEYS = ("score", "anomaly_map", "label", "key", "category", "image", "method_smooth",
                   "blur_size", "blur_sigma", "profile")


def load_predictions(path: Path, required: Sequence[str] = PREDICTION_KEYS) -> dict[str, np.ndarray]:
    """A saved predictions file; one line naming the file when a `required` array is missing."""
    with np.load(path, allow_pickle=False) as data:
        predictions = {key: data[key] for key in data.files}
    missing = [key for key in required if key not in predictions]
    if missing:
        raise XadError(f"{path}: predictions without {', '.join(missing)} (written by an older xadbench); "
                       f"rerun the job into a new --out")
    return predictions


def verify_predictions(path: Path) -> None:
    """Read a predictions file in full (every array decompressed and its checksum compared)
    and check it holds PREDICTION_KEYS; XadError saying what is wrong otherwise."""
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
    """One thing wrong with a run folder; `job_id` names the job the next run reruns for it."""

    message: str
    job_id: str | None = None


def check_run(run_dir: Path) -> list[Problem]:
    """What is wrong with a run folder, one line each: the results store (SQLite's integrity
    check, values that are not numbers, a results.csv of an older xadbench that cannot be
    imported) and, per finished job, a predictions file or checkpoint that is missing or cannot
    be read in full. Reads only."""
    run_dir = Path(run_dir)
    store = results_store(run_dir)
    problems = [Problem(line) for line in store.problems()]
    if problems:
        return problems
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
        if problem.job_id is None:
            raise XadError(problem.message)
        warnings.warn(problem.message, stacklevel=2)
    store.drop_jobs({p.job_id for p in problems if p.job_id})
    store.export_csv()
    return store


class Progress:
    """What run_grid reports; the CLI implements it with rich, tests with nothing."""

    def job_started(self, index: int, total: int, spec: JobSpec) -> None: ...
    def epoch(self, epoch: int, epochs: int, loss: float) -> None: ...
    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None: ...
    def job_waiting(self, spec: JobSpec, owner: Owner) -> None: ...
    def job_failed(self, spec: JobSpec, message: str) -> None: ...


#: Seconds between looks at the jobs another process runs.
POLL_S = 1.0


class JobsFailed(XadError):
    """Some jobs of a grid failed (each was reported as it failed); the others are stored."""


def claimed_jobs(store: ResultStore, specs: Sequence[JobSpec], progress: Progress,
                 claimed: set[str]) -> Iterator[tuple[int, JobSpec] | None]:
    """(index, spec) of each job this process claims in the store, in grid order, as the
    executor asks for them (its id added to `claimed`). A finished job is reported as skipped; a
    job another live process claimed is left to it and asked for again later (taken over should
    that process die): None is yielded when nothing can be claimed now."""
    pending, waited = list(enumerate(specs)), set()
    while pending:
        waiting = []
        for index, spec in pending:
            claim = store.claim(spec.job_id)
            if claim == FINISHED:
                progress.job_finished(spec, [], skipped=True)
            elif claim == CLAIMED:
                claimed.add(spec.job_id)
                yield index, spec
            else:
                if spec.job_id not in waited:
                    progress.job_waiting(spec, claim)
                    waited.add(spec.job_id)
                waiting.append((index, spec))
        pending = waiting
        if pending:
            yield None


def run_grid(specs: Sequence[JobSpec], out: Path, progress: Progress | None = None, executor: Any = None) -> pd.DataFrame:
    """Run every job of `specs` that the run folder's store does not hold yet on `executor`
    (xadbench.executors; default: one after another in this process) and store each as it
    finishes: this process is the only writer of the run folder, wherever the jobs run. A job is
    claimed in the store before it starts, so concurrent runs into one folder share the work
    (`claimed_jobs`). A job that an executor reports failed (Ray) is released, the others go on,
    and JobsFailed at the end names the failed ones; an exception the executor raises (a local
    job's error) stops the run with every claim released. Returns every row of the store."""
    from xadbench.executors import JobFailure, LocalExecutor

    progress = progress or Progress()
    executor = executor or LocalExecutor()
    out = Path(out)
    store = prepare_run(out)
    claimed: set[str] = set()
    failed = []
    try:
        for spec, outcome in executor.run(claimed_jobs(store, specs, progress, claimed), len(specs), progress):
            if isinstance(outcome, JobFailure):
                store.release(spec.job_id)
                failed.append(spec)
                progress.job_failed(spec, outcome.message)
            else:
                save_job_result(out, spec.job_id, outcome)
                progress.job_finished(spec, outcome.rows, skipped=False)
            claimed.discard(spec.job_id)
    finally:
        for job_id in claimed:  # jobs that were running when the run stopped
            store.release(job_id)
    if failed:
        raise JobsFailed(f"{len(failed)} of {len(specs)} jobs failed (job ids {', '.join(s.job_id for s in failed)}); "
                         f"the others are stored in {out}, and a rerun of the same command runs only the failed ones")
    return store.read()
