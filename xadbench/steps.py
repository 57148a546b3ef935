"""Steps a job may declare on top of the one data path (loader -> protocol -> method ->
post-processor -> evaluator), so that a study is an ordinary grid of jobs (`runner.JobSpec`):

- a `DataTransform` changes the training data and the test set the protocol prepared, before
  the method sees them (e.g. the Clever Hans study: make one class the known anomalies and stamp
  a watermark on some of its images), and may annotate the test set (e.g. which images carry
  the watermark; saved in the job's predictions file under those names);
- an `ExtraMetric` computes more numbers from the scores, the post-processed maps, the labels
  and those annotations (e.g. the share of heatmap mass in the watermark's box), stored as rows
  of the results store beside the evaluator's metrics.

A step is a frozen dataclass of plain values (numbers, strings, None), so it is hashable (part
of the job's identity), picklable (Ray ships it to workers) and recorded in the job's saved spec
as {"step": "module:Class", "params": {...}} (`declaration`), from which `from_declaration`
builds it again (`xadbench evaluate`).
"""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.types import Sample, TrainData


@dataclass(frozen=True)
class Step:
    """Base of the declared steps."""

    def declaration(self) -> dict[str, Any]:
        kind = type(self)
        return {"step": f"{kind.__module__}:{kind.__qualname__}", "params": dataclasses.asdict(self)}


@dataclass
class Prepared:
    """What a data transform hands on: the training data, the test samples to score, and
    per-test-set annotations (arrays a metric or a figure reads; names must not clash with the
    runner's own predictions keys)."""

    train: TrainData
    test: list[Sample]
    annotations: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class DataTransform(Step):
    """Changes a job's prepared data; `label` says how in progress lines."""

    @property
    def label(self) -> str:
        return type(self).__name__

    def apply(self, train: TrainData, test: list[Sample], dataset: Dataset, image_size: int, seed: int) -> Prepared:
        """The data the method is trained and scored on. `dataset` is the job's opened data
        set, `image_size` the size its images were loaded at, `seed` the job's seed."""
        raise NotImplementedError


@dataclass(frozen=True)
class ExtraMetric(Step):
    """More numbers per job and blur policy: {metric name: value}."""

    def __call__(self, scores: np.ndarray, maps: np.ndarray, labels: np.ndarray,
                 annotations: dict[str, np.ndarray]) -> dict[str, float]:
        raise NotImplementedError


S = TypeVar("S", bound=Step)


def from_declaration(record: dict[str, Any], kind: type[S], where: str) -> S:
    """The step a `declaration` describes, checked to be a `kind`; one XadError line naming
    `where` otherwise (e.g. a step a newer or removed module defined)."""
    try:
        module, _, name = record["step"].partition(":")
        target: Any = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (KeyError, AttributeError, ImportError, TypeError) as exc:
        raise XadError(f"{where}: a declared step this xadbench cannot find ({record!r:.120}; {type(exc).__name__})") from None
    if not (isinstance(target, type) and issubclass(target, kind)):
        raise XadError(f"{where}: {record['step']} is not a {kind.__name__}")
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in record.get("params", {}).items()}
    try:
        return target(**params)
    except TypeError as exc:
        raise XadError(f"{where}: {record['step']} does not take these parameters ({exc})") from None
