"""Jobs: their identity and running one.

A job is (dataset, class, method, seed, preset, protocol, ...): self-contained and idempotent;
`JobSpec` declares it and `identify` gives it its id. `run_job` takes its spec and returns its
result rows and predictions without touching the run folder, so a distributed engine can run the
same job list across machines; `save_job_result` stores one finished job (files, then its rows
in one transaction of the results store, xadbench.store) whatever ran it; what a run folder
holds and how it is read and checked is `xadbench.run_folder`. Planning a grid of jobs and
running it on an executor is `xadbench.grid`.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xadbench import heatmaps, protocols, sanity
from xadbench.anomalies import limit_outlier_exposure
from xadbench.data_root import default_root
from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.files import Owner
from xadbench.method import Method, resolve_device
from xadbench.metrics import registry
from xadbench.profiles import Profile, check_preset, get_profile
from xadbench.registry import datasets, methods, plugin_call
from xadbench.run_folder import PREDICTION_KEYS, identity_arrays, results_store, save_checkpoint, save_predictions
from xadbench.seeding import seed_everything
from xadbench.steps import DataTransform, ExtraMetric, Prepared
from xadbench.types import Prediction, Sample, TrainData, stack_images

#: Options of a run that reach a method only when its __init__ has a keyword of that name.
ROUTED_OPTIONS = ("device", "weights", "pretrained", "seed")


@dataclass(frozen=True)
class JobSpec:
    """Everything that determines a job's result.

    `profile` and `image_size` override the data set's profile and the preset's image size
    (None: the data set's own); `transform` changes the data the protocol prepared and `metrics`
    add numbers computed on the post-processed maps (xadbench.steps), so a study is a grid of
    ordinary jobs. `job_id` is set once, when the grid is built (`identify`); a `replace` that
    changes what the id covers must clear it (job_id="")."""

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
    profile: str | None = None
    image_size: int | None = None
    transform: DataTransform | None = None
    metrics: tuple[ExtraMetric, ...] = ()
    dataset_options: tuple[tuple[str, str], ...] = ()  # keywords for the data set's constructor
    device: str = field(default="auto", compare=False)
    download: bool = field(default=False, compare=False)
    sanity: bool = field(default=False, compare=False)  # also score xadbench.sanity's checks
    job_id: str = field(default="", compare=False)


#: Fields that do not change a job's result, and fields that enter its id only when set (so the
#: ids of jobs without them stay what they were before the fields existed).
_NOT_IN_ID = ("device", "download", "sanity", "job_id")
_ONLY_WHEN_SET = ("dataset_options", "profile", "image_size", "transform", "metrics")


def compute_job_id(spec: JobSpec, profile: Profile) -> str:
    """16 hex digits of a SHA-1 over the spec and what the code makes of it: the values of the
    method's preset for the profile and what the runner takes from the profile (image size and
    the shared blur), so a preset retuned in code gives new ids and a rerun into the same folder
    does not mistake old results for current ones (the device excluded: a job finished on one
    device counts as finished on another)."""
    key: dict[str, Any] = {f.name: getattr(spec, f.name) for f in fields(spec)
                           if f.name not in _NOT_IN_ID + _ONLY_WHEN_SET}
    if spec.dataset_options:
        key["dataset_options"] = spec.dataset_options
    if spec.profile is not None:
        key["profile"] = spec.profile
    if spec.image_size is not None:
        key["image_size"] = spec.image_size
    if spec.transform is not None:
        key["transform"] = spec.transform.declaration()
    if spec.metrics:
        key["metrics"] = [m.declaration() for m in spec.metrics]
    key["preset_values"] = methods.get(spec.method).preset(spec.preset, profile.name)
    key["profile_values"] = [job_image_size(spec, profile), profile.sigma[spec.preset], profile.receptive_field]
    return hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def identify(specs: Iterable[JobSpec]) -> list[JobSpec]:
    """The grid: `specs` with their job ids (a spec that has one keeps it), duplicates dropped
    (order kept). A data set whose class does not declare its profile (a folder tree: its
    profile follows its image size) is opened once per (name, root, options) here, not once per
    job."""
    profiles: dict[tuple[Any, ...], str] = {}
    out = []
    for spec in dict.fromkeys(specs):
        if spec.job_id:
            out.append(spec)
            continue
        name = spec.profile
        if name is None:
            where = (spec.dataset, spec.root, spec.dataset_options)
            if where not in profiles:
                declared = datasets.get(spec.dataset).profile if spec.dataset in datasets.names() else None
                profiles[where] = declared if isinstance(declared, str) else open_dataset(spec.dataset, spec.root, options=spec.dataset_options).profile
            name = profiles[where]
        out.append(replace(spec, job_id=compute_job_id(spec, get_profile(name))))
    return out


def job_image_size(spec: JobSpec, profile: Profile) -> int:
    return spec.image_size if spec.image_size is not None else profile.image_size[spec.preset]


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
    return replace(spec, oe=None, oe_root=None, oe_limit=None, oe_exclude=(), job_id="")


def open_dataset(name: str, root: str | None, download: bool = False,
                 options: tuple[tuple[str, str], ...] = ()) -> Dataset:
    """A registered data set by name, or any folder-per-class tree given as a path. Without a
    root, a data set with a `data_folder` gets its default root (`xadbench.data_root`).
    `options`: (keyword, value) pairs for the plugin's constructor beyond root and download
    (e.g. folder-masks' folder names); a keyword it does not take is an error."""
    if name not in datasets.names() and Path(name).is_dir():
        if options:
            raise XadError(f"a folder-per-class data set takes no options (given: {', '.join(k for k, _ in options)})")
        return datasets.create("folder", root=name, download=False)
    plugin = datasets.get(name)
    accepted = dataset_option_names(plugin)
    for key, _ in options:
        if key not in accepted:
            raise XadError(f"data set {name!r} has no option {key!r}; "
                           f"{'it has: ' + ', '.join(accepted) if accepted else 'it takes none'}")
    folder = getattr(plugin, "data_folder", None)  # plugins that predate it have none
    if root is None and folder is not None:
        root = str(default_root(name, folder, getattr(plugin, "can_download", False), download))
    return datasets.create(name, root=root, download=download, **dict(options))


def dataset_option_names(plugin: type) -> list[str]:
    """The keywords a data set plugin's constructor takes beyond root and download."""
    parameters = inspect.signature(plugin.__init__).parameters
    return [n for n, p in parameters.items() if n not in ("self", "root", "download")
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


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


def evaluate(prediction: Prediction, test: Sequence[Sample]) -> dict[str, float]:
    """Every headline metric of the metric registry (`metrics.registry.score`) of `prediction`'s
    maps (post-processed, at the model's resolution: PIXEL_RESOLUTION) against the test set's
    masks brought to that resolution (`heatmaps.scoring_masks`)."""
    labels = np.array([s.label for s in test])
    scores = np.asarray(prediction.score, dtype=np.float32)
    if not all(s.mask is not None for s in test):
        return registry.score(scores, labels)
    maps = np.asarray(prediction.anomaly_map)
    masks = heatmaps.scoring_masks([s.mask for s in test], maps.shape[-2:])
    return registry.score(scores, labels, list(maps), list(masks))


def score_job(spec: JobSpec, prediction: Prediction, test: Sequence[Sample], process: heatmaps.PostProcessor,
              method: Method | None = None, images: torch.Tensor | None = None, reference: torch.Tensor | None = None,
              annotations: dict[str, np.ndarray] | None = None) -> tuple[list[tuple[str, str, float]], float]:
    """(blur, metric, value) for every blur policy of the job: the evaluator's metrics and the
    spec's extra metrics on the maps after the post-processor `process`, with
    `xadbench.sanity`'s checks when `spec.sanity` (those that need the fitted `method`, its input
    `images` and the nominal `reference` only when given); and the seconds the checks took."""
    metrics, sanity_s = [], 0.0
    labels = np.array([s.label for s in test])
    for blur in spec.blur:
        post = functools.partial(process, policy=blur)
        scored = Prediction(prediction.score, post(prediction.anomaly_map))
        # The headline metrics score the maps as the predictions file keeps them (float16), so the
        # bootstrap of the saved predictions gives the very same values.
        values = evaluate(Prediction(prediction.score, heatmaps.scored_maps(prediction.anomaly_map, process, blur)), test)
        for extra in spec.metrics:
            more = extra(scored.score, scored.anomaly_map, labels, annotations or {})
            if set(more) & set(values):
                raise XadError(f"extra metric {type(extra).__name__} names metrics the job has already: "
                               f"{', '.join(sorted(set(more) & set(values)))}")
            values.update(more)
        if spec.sanity:
            start = time.perf_counter()
            values.update(sanity.sanity_metrics(scored, test, evaluate, method, images, post, reference))
            sanity_s += time.perf_counter() - start
        metrics += [(blur, metric, value) for metric, value in values.items()]
    return metrics, round(sanity_s, 3)


@dataclass
class JobData:
    """A job's opened data set, its profile and image size, and the data it trains and scores on."""

    dataset: Dataset
    profile: Profile
    image_size: int
    train: TrainData
    test: list[Sample]
    annotations: dict[str, np.ndarray]


def load_job_data(spec: JobSpec) -> JobData:
    """The data of a job: the class at the job's image size, split by the protocol, then changed
    by the spec's transform. Reads only."""
    check_preset(spec.preset)
    protocols.check_protocol(spec.protocol)
    dataset = open_dataset(spec.dataset, spec.root, spec.download, spec.dataset_options)
    profile = get_profile(spec.profile or dataset.profile)
    image_size = job_image_size(spec, profile)
    task = dataset.load(spec.class_name, image_size)
    train, test = protocols.prepare(task, spec.protocol, seed=spec.seed, k=spec.k,
                                    outlier_exposure=outlier_exposure(spec, image_size))
    prepared = Prepared(train, list(test))
    if spec.transform is not None:
        prepared = spec.transform.apply(train, list(test), dataset, image_size, spec.seed)
    clash = set(prepared.annotations) & {*PREDICTION_KEYS, "mask", "spec", "job_id", "spec_digest"}
    if clash:
        raise XadError(f"data transform {type(spec.transform).__name__} annotates {', '.join(sorted(clash))}, "
                       "names the predictions file uses already")
    return JobData(dataset, profile, image_size, prepared.train, list(prepared.test), prepared.annotations)


def spec_record(spec: JobSpec) -> dict[str, Any]:
    """The spec as plain values for the predictions file (steps as their declarations)."""
    record = {f.name: getattr(spec, f.name) for f in fields(spec) if f.name not in ("transform", "metrics")}
    record["transform"] = None if spec.transform is None else spec.transform.declaration()
    record["metrics"] = [m.declaration() for m in spec.metrics]
    return record


def run_job(spec: JobSpec, on_epoch: Callable[[int, int, float], None] | None = None,
            on_phase: Callable[[str], None] = lambda phase: None) -> JobResult:
    """Train and score one job; pure apart from reading data (no writes). A spec without its id
    (not from `identify`) gets it here, from the profile the job opened. `on_phase` hears each
    phase as it starts: "fit", "predict", "scoring" or "scoring and sanity checks"."""
    data = load_job_data(spec)
    if not spec.job_id:
        spec = replace(spec, job_id=compute_job_id(spec, data.profile))
    seed_everything(spec.seed)
    method = build_method(spec, data.profile.name)
    start = time.perf_counter()
    on_phase("fit")
    with plugin_call("method", spec.method, "fit"):
        method.fit(protocols.restrict(data.train, method.supervision), on_epoch=on_epoch)
    fit_s = time.perf_counter() - start
    test = data.test
    images = stack_images(test)
    start = time.perf_counter()
    on_phase("predict")
    with plugin_call("method", spec.method, "predict"):
        prediction = method.predict(images)
    predict_s = time.perf_counter() - start
    if not (np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all()):
        raise XadError(f"method {spec.method!r} produced non-finite scores or maps on {spec.dataset}/{spec.class_name}")

    common = {
        "job_id": spec.job_id, "dataset": spec.dataset, "class": spec.class_name, "method": spec.method,
        "seed": spec.seed, "preset": spec.preset, "image_size": data.image_size, "protocol": spec.protocol,
        "oe": spec.oe or "", "oe_limit": spec.oe_limit if spec.oe_limit is not None else ("all" if spec.oe else ""),
        "oe_exclude": ",".join(spec.oe_exclude),
        "k": spec.k if spec.protocol == "semi-supervised" else "",
        "weights": method.weights_used_,
        "n_train": len(data.train.nominal), "n_test": len(test), "fit_s": round(fit_s, 3),
        "predict_s": round(predict_s, 3), "params": json.dumps(method.get_params(), sort_keys=True, default=str),
        # CPU training is bit-identical only for a fixed thread count (reduction order), so
        # every row says which count and device produced it.
        "threads": torch.get_num_threads(), "device": str(resolve_device(spec.device)),
    }
    process = heatmaps.PostProcessor(size=data.profile.receptive_field, sigma=data.profile.sigma[spec.preset],
                                     maps_smoothed=method.maps_smoothed)
    on_phase("scoring and sanity checks" if spec.sanity else "scoring")
    reference = sanity.nominal_reference(stack_images(data.train.nominal)) if spec.sanity else None
    metrics, sanity_s = score_job(spec, prediction, test, process, method, images, reference, data.annotations)
    rows = [{**common, "blur": blur, "metric": metric, "value": value, "sanity_s": sanity_s}
            for blur, metric, value in metrics]

    predictions = {
        "score": prediction.score.astype(np.float32),
        "anomaly_map": prediction.anomaly_map.astype(np.float16),  # raw: readers apply the post-processor
        "label": np.array([s.label for s in test], dtype=np.int8),
        "key": np.array([s.key for s in test]),
        "category": np.array([s.category for s in test]),
        "image": (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
        "postprocessor": np.array(process.record()),
        "profile": np.array(data.profile.name),
        **identity_arrays(spec.job_id, json.dumps(spec_record(spec), default=str)),
        **data.annotations,
    }
    if all(s.mask is not None for s in test):
        heatmaps.warn_large_masks([s.mask for s in test], images.shape[-2:], [s.key for s in test])
        predictions["mask"] = heatmaps.scoring_masks([s.mask for s in test], images.shape[-2:])
    with plugin_call("method", spec.method, "checkpoint"):
        state = method.checkpoint()
    return JobResult(rows, predictions, None if state is None else {"method": spec.method, "state": state})


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


class Progress:
    """What run_grid reports; the CLI implements it with rich, tests with nothing."""

    def job_started(self, index: int, total: int, spec: JobSpec) -> None: ...
    def epoch(self, epoch: int, epochs: int, loss: float) -> None: ...
    def phase(self, name: str) -> None: ...
    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None: ...
    def job_waiting(self, spec: JobSpec, owner: Owner) -> None: ...
    def job_failed(self, spec: JobSpec, message: str) -> None: ...


#: Seconds between looks at the jobs another process runs.
POLL_S = 1.0
