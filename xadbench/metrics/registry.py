"""The metric registry: every metric xadbench scores, declared once.

A `Metric` says what the metric is called (`name`, the key of results.csv and the store; `label`,
the words of captions and headings), what it is computed from (`unit`: the bootstrap resamples
images, and an image-unit metric takes image scores, a pixel- or region-unit one the maps and
masks), which way is better, its range (values outside it are a defect), its point function, the
function that gives its value on every reweighting of the test images (the bootstrap of
`metrics.bootstrap`), whether it is a headline metric (results.csv at run time, the headline
tables of report.html, the overview figure, `compare --metric`) and how many decimals it prints.
Run-time scoring (`score`), the intervals, the tables, the HTML page, the figures, the command
line and the README's "Metrics" section read this registry (as timm's model registry:
`register_metric`, `get_metric`, `list_metrics`).

Pixel metrics are pooled at one resolution, PIXEL_RESOLUTION: the model's input size. Each test
image's map (after the blur policy, stored as float16 like the saved maps) and its mask (nearest
neighbour) are brought to it, so every image weighs the same however large its file, and the
point values of results.csv and the bootstrap's intervals come from the very same arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from xadbench.evaluator import image_auc, per_image_pixel_auc, pixel_auc
from xadbench.metrics.aupro import aupro
from xadbench.metrics.bootstrap import TestSet

#: Units of resampling: what one metric value is computed over.
UNITS = ("image", "pixel", "region")
#: The resolution pixel metrics are pooled at: the model's input size (the maps' own), to which
#: every mask is brought by nearest neighbour (`heatmaps.scoring_masks`).
PIXEL_RESOLUTION = "model"


@dataclass(frozen=True)
class Metric:
    """One metric. `point(scores, labels)` for unit "image", `point(maps, masks)` otherwise (maps
    and masks at PIXEL_RESOLUTION); `resample(test_set, weights)` its value for each row of
    `weights` (resamples × images) of a `metrics.bootstrap.TestSet`. Metrics that a job's
    sanity checks compute (`xadbench.sanity`, they need the fitted model) declare no point or
    resample function and are not headline metrics."""

    name: str
    label: str
    unit: str
    higher_is_better: bool
    range: tuple[float, float]
    headline: bool
    point: Callable[..., float] | None = None
    resample: Callable[[TestSet, np.ndarray], np.ndarray] | None = None
    digits: int = 3

    @property
    def needs_masks(self) -> bool:
        return self.unit != "image"

    def format(self, value: float) -> str:
        return f"{value:.{self.digits}f}"

    def in_range(self, value: float) -> bool:
        low, high = self.range
        return bool(low <= value <= high)


_METRICS: dict[str, Metric] = {}


def register_metric(metric: Metric) -> Metric:
    """Add `metric` to the registry (a name may be declared once)."""
    if metric.unit not in UNITS:
        raise ValueError(f"metric {metric.name!r}: unit {metric.unit!r} is not one of {', '.join(UNITS)}")
    if metric.name in _METRICS:
        raise ValueError(f"metric {metric.name!r} is declared twice")
    _METRICS[metric.name] = metric
    return metric


def get_metric(name: str) -> Metric:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(_METRICS)}") from None


def list_metrics(headline: bool | None = None, needs_masks: bool | None = None) -> tuple[str, ...]:
    """The registered metric names in declaration order, optionally only (non-)headline or
    (non-)mask ones."""
    return tuple(m.name for m in _METRICS.values()
                 if (headline is None or m.headline == headline)
                 and (needs_masks is None or m.needs_masks == needs_masks))


def score(scores: np.ndarray, labels: np.ndarray, maps: Sequence[np.ndarray] | None = None,
          masks: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """Every headline metric the inputs support: the image metrics always, the pixel and region
    ones when `maps` and `masks` (at PIXEL_RESOLUTION) are given. A value outside the metric's
    declared range is a defect and raises ValueError."""
    values = {}
    for name in list_metrics(headline=True):
        metric = _METRICS[name]
        if not metric.needs_masks:
            values[name] = float(metric.point(scores, labels))
        elif maps is not None and masks is not None:
            values[name] = float(metric.point(maps, masks))
        else:
            continue
        if not metric.in_range(values[name]):
            raise ValueError(f"metric {name} = {values[name]!r} is outside its range {metric.range}")
    return values


UNIT = (0.0, 1.0)
CORRELATION = (-1.0, 1.0)
UNBOUNDED = (-np.inf, np.inf)

register_metric(Metric("image_auc", "Detection AUC", "image", True, UNIT, True,
                       image_auc, TestSet.image_auc_resamples))
register_metric(Metric("pixel_auc", "Pixel-wise AUC (pooled)", "pixel", True, UNIT, True,
                       pixel_auc, TestSet.pixel_auc_resamples))
register_metric(Metric("per_image_pixel_auc", "Per-image pixel AUC", "pixel", True, UNIT, True,
                       per_image_pixel_auc, TestSet.per_image_pixel_auc_resamples))
register_metric(Metric("aupro", "AUPRO (per-region overlap up to FPR 0.3, normalised)", "region", True, UNIT, True,
                       aupro, TestSet.aupro_resamples))
# The sanity checks' metrics (`xadbench.sanity`), computed in the job from the fitted model.
register_metric(Metric("pixel_auc_mean_map", "Pixel-wise AUC (pooled) of the method's own mean map",
                       "pixel", True, UNIT, False))
register_metric(Metric("per_image_pixel_auc_mean_map", "Per-image pixel AUC of the method's own mean map",
                       "pixel", True, UNIT, False))
for _step, _words in (("top", "the top layer"), ("all", "all layers")):
    # Similar maps after re-initialising the weights mean the map does not depend on them: lower is better.
    register_metric(Metric(f"randomised_spearman_{_step}",
                           f"Spearman correlation with the map after re-initialising {_words}",
                           "image", False, CORRELATION, False))
    register_metric(Metric(f"randomised_ssim_{_step}", f"SSIM with the map after re-initialising {_words}",
                           "image", False, CORRELATION, False))
register_metric(Metric("pixel_auc_randomised", "Pixel-wise AUC (pooled) after re-initialising all layers",
                       "pixel", False, UNIT, False))
register_metric(Metric("deletion_area", "Normalised deletion area (lower: more faithful)",
                       "image", False, UNBOUNDED, False))
register_metric(Metric("deletion_area_random", "Normalised deletion area, random pixel order",
                       "image", False, UNBOUNDED, False))
register_metric(Metric("insertion_area", "Normalised insertion area (higher: more faithful)",
                       "image", True, UNBOUNDED, False))
register_metric(Metric("faithfulness_gain", "Faithfulness gain (random minus map deletion area)",
                       "image", True, UNBOUNDED, False))
