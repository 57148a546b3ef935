"""Jobs and the grid runner.

A job is (dataset, class, method, seed, preset, protocol, ...): self-contained and idempotent.
`run_job` takes its spec and returns its result rows and predictions without touching the run
folder, so a distributed engine can run the same job list across machines; `run_grid` runs a
grid here, writes each finished job's predictions and rows atomically, and skips finished jobs
on a second invocation.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
from xadbench.method import Method
from xadbench.profiles import Profile, check_preset, get_profile
from xadbench.registry import datasets, methods, plugin_call
from xadbench.types import Prediction, Sample, stack_images

BLUR_POLICIES = ("gaussian", "none")
#: Options of a run that reach a method only when its __init__ has a keyword of that name.
ROUTED_OPTIONS = ("device", "weights", "pretrained", "seed")

RESULT_COLUMNS = [
    "job_id", "dataset", "class", "method", "seed", "preset", "image_size", "protocol", "blur", "metric", "value",
    "oe", "oe_limit", "oe_exclude", "k", "weights", "n_train", "n_test", "fit_s", "predict_s", "sanity_s", "params",
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
        "weights": getattr(method, "weights_used_", "none"),
        "n_train": len(train.nominal), "n_test": len(test), "fit_s": round(fit_s, 3), "predict_s": round(predict_s, 3),
        "params": json.dumps(method.get_params(), sort_keys=True, default=str),
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


@contextmanager
def atomic_write(path: Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside `path`, then rename: readers see the old or the new
    file, never a half-written one. The file gets the permissions of a plainly created one
    (0666 less the umask), not mkstemp's owner-only 0600, so a shared run folder stays readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def write_config(out: Path, config: dict[str, Any]) -> None:
    with atomic_write(out / "config.json") as handle:
        json.dump(config, handle, indent=2, default=str)


def read_results(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    try:
        # Text columns keep "" as text; a metric that does not apply (NaN) is written as "".
        return pd.read_csv(path, dtype={"oe_limit": str, "oe_exclude": str, "k": str, "oe": str}, keep_default_na=False,
                           na_values={"value": [""], "sanity_s": [""]})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise XadError(f"{path}: not a readable results file ({type(exc).__name__}: {exc})") from None


def append_results(path: Path, rows: list[dict[str, Any]], columns: Sequence[str] = RESULT_COLUMNS) -> None:
    """Add a finished job's rows to a results CSV atomically (old text + new rows, then rename).
    A file written with other columns (an older version) is rewritten with the current ones, its
    rows keeping their values and leaving new columns empty."""
    old = path.read_text() if path.exists() else ""
    if old and old.splitlines()[0] != ",".join(columns):
        old = read_results(path).reindex(columns=list(columns)).to_csv(index=False)
    new = pd.DataFrame(rows, columns=list(columns)).to_csv(index=False, header=not old)
    with atomic_write(path) as handle:
        handle.write(old + new)


def replace_results(path: Path, job_id: str, rows: list[dict[str, Any]]) -> None:
    """Replace every row of one job in a results CSV by `rows`, atomically."""
    old = read_results(path)
    kept = old[old["job_id"].astype(str) != job_id]
    frame = pd.concat([kept, pd.DataFrame(rows, columns=RESULT_COLUMNS)], ignore_index=True)
    with atomic_write(path) as handle:
        handle.write(frame.to_csv(index=False))


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


class Progress:
    """What run_grid reports; the CLI implements it with rich, tests with nothing."""

    def job_started(self, index: int, total: int, spec: JobSpec) -> None: ...
    def epoch(self, epoch: int, epochs: int, loss: float) -> None: ...
    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None: ...


def run_grid(specs: Sequence[JobSpec], out: Path, progress: Progress | None = None) -> pd.DataFrame:
    """Run every job whose id is not yet in out/results.csv; returns the whole results table."""
    progress = progress or Progress()
    results_path = out / "results.csv"
    done = set(read_results(results_path)["job_id"].astype(str))
    for index, spec in enumerate(specs):
        if spec.job_id in done:
            progress.job_finished(spec, [], skipped=True)
            continue
        progress.job_started(index, len(specs), spec)
        result = run_job(spec, on_epoch=progress.epoch)
        if result.checkpoint is not None:
            save_checkpoint(out / "checkpoints" / f"{spec.job_id}.pt", result.checkpoint)
        save_predictions(out / "predictions" / f"{spec.job_id}.npz", result.predictions)
        append_results(results_path, result.rows)
        done.add(spec.job_id)
        progress.job_finished(spec, result.rows, skipped=False)
    return read_results(results_path)
