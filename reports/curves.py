"""ROC and PRO curves of a run's methods with bootstrap bands, drawn from saved predictions.

Curves, one figure per (data set, class, protocol, preset) and kind: the image-level ROC, the
pooled pixel-level ROC and the PRO curve up to FPR 0.3 (AUPRO's range; `metrics.aupro`), every
method in one axes, as PNG, PDF and SVG. A method's line is its exact curve (the mean over seeds
of each seed's curve, vertically at fixed false-positive rates); the shaded band is the 95 %
percentile band of the seed-averaged curves of the interval tables' bootstrap resamples
(`reports.intervals`: the same stratified resamples of the test images, so the band and the
table's interval come from one bootstrap). Pixel curves use the maps at the model's resolution
after the blur policy, stored as float16, all pixels (the band's resamples keep the curve at
2,048 thresholds of about equal pooled count: the exact curve's points joined by chords). The
legend shows each method's table value with its interval, the number the tables print.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from xadbench.evaluator import IMAGE_AUC
from xadbench.metrics.aupro import MAX_FPR, RegionCounts
from xadbench.metrics.bootstrap import (
    curve_at,
    image_counts,
    merge_columns,
    percentile_interval,
    roc_resamples,
    stratified_weights,
)
from xadbench.metrics.counts import ImageCounts
from xadbench.reports.intervals import IntervalTable, class_seed, resampled_maps
from xadbench.reports.table_formats import format_interval

#: Points of a drawn curve and of its band; thresholds a band's resamples keep (`merge_columns`).
CURVE_POINTS, BAND_POINTS, BAND_THRESHOLDS = 1001, 201, 2048
#: Resamples per batch of PRO curves (bounds the resamples × thresholds temporaries).
CURVE_BATCH = 100


@dataclass
class Band:
    """One method's curve in a figure: y at the x `grid` (the mean over seeds of each seed's
    exact curve), its bootstrap band (percentiles of the seed-averaged curves of the resamples, at
    `band_grid`) and the legend text."""

    label: str
    grid: np.ndarray
    curve: np.ndarray
    band_grid: np.ndarray
    low: np.ndarray
    high: np.ndarray
    legend: str


#: What a curve figure plots: (x label, y label, x range, chance line).
CURVE_AXES = {
    "image": ("false positive rate (nominal images)", "true positive rate (anomalous images)", 1.0, True),
    "pixel": ("false positive rate (nominal pixels)", "true positive rate (defect pixels)", 1.0, True),
    "pro": ("false positive rate (nominal pixels)", "per-region overlap (PRO)", MAX_FPR, False),
}


#: A column of a two-column paper (inches): the curves are drawn at the size they are printed,
#: so their 7 pt labels stay 7 pt (the caption, with what `draw_curves` once put in a title, is
#: written beside the figure).
COLUMN_INCHES = 3.5


def draw_curves(bands: list[Band], level: str) -> Figure:
    """All methods in one axes, each its curve and bootstrap band; the legend says each method's
    table value (see `Band`). COLUMN_INCHES wide, fonts 7 pt."""
    xlabel, ylabel, xmax, chance = CURVE_AXES[level]
    fig = Figure(figsize=(COLUMN_INCHES, 3.3))
    ax = fig.add_subplot()
    if chance:
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    colours = matplotlib.colormaps["tab10"]
    for i, band in enumerate(bands):
        colour = colours(i % 10)
        ax.fill_between(band.band_grid, band.low, band.high, color=colour, alpha=0.18, linewidth=0)
        ax.plot(band.grid, band.curve, color=colour, linewidth=1.3, label=band.legend)
    ax.set(xlim=(0, xmax), ylim=(0, 1.01))
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(loc="lower right", fontsize=6.5)
    fig.tight_layout()
    return fig


def _counts(p: dict[str, np.ndarray], blur: str, level: str):
    """What a level's curve needs of one job: (pos, neg) count matrices over ascending values for
    "image" and "pixel" (the maps as the intervals resample them, `intervals.resampled_maps`), the
    `RegionCounts` for "pro"; None where the job's test set cannot give the curve."""
    if level == "image":
        return image_counts(p["score"], p["label"]) if len(np.unique(p["label"])) == 2 else None
    if "mask" not in p or not p["mask"].any() or p["mask"].all():
        return None
    pixels = ImageCounts(resampled_maps(p, blur), list(p["mask"]))
    return (pixels.pos, pixels.neg) if level == "pixel" else RegionCounts(pixels)


def _curves(counts, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """y at `grid` of the curve of each row of `weights` (ROC from (pos, neg); PRO from
    RegionCounts, up to FPR grid[-1]), in batches of resamples."""
    if isinstance(counts, RegionCounts):
        return np.concatenate([curve_at(*counts.curves(weights[i:i + CURVE_BATCH], grid[-1]), grid)
                               for i in range(0, len(weights), CURVE_BATCH)])
    return roc_resamples(*counts, weights, grid)


def curve_bands(jobs: dict[str, list[dict[str, np.ndarray]]], class_name: str, blur: str, level: str,
                n_resamples: int, seed: int, legends: dict[str, str]) -> list[Band]:
    """The curve and bootstrap band of every method (label → its seeds' predictions) of one class
    at one level ("image", "pixel" or "pro"). The resamples are those of the class's row in the
    interval tables (`reports.intervals`: the same stratified weights over the union of the jobs'
    test images, the same seed), so a band belongs to the table's interval."""
    union: dict[str, int] = {}
    for preds in jobs.values():
        for p in preds:
            for key, label in zip(p["key"], p["label"]):
                union.setdefault(str(key), int(label))
    labels = np.array(list(union.values()))
    if labels.all() or not labels.any():
        return []
    position = {key: i for i, key in enumerate(union)}
    weights = stratified_weights(labels, n_resamples, class_seed(class_name, seed))
    xmax = CURVE_AXES[level][2]
    grid, band_grid = np.linspace(0, xmax, CURVE_POINTS), np.linspace(0, xmax, BAND_POINTS)
    bands = []
    for label, preds in jobs.items():
        curves, resampled = [], []
        for p in preds:
            counts = _counts(p, blur, level)
            if counts is None:
                continue
            index = np.array([position[str(k)] for k in p["key"]])
            curves.append(_curves(counts, np.ones((1, len(index))), grid)[0])
            if not isinstance(counts, RegionCounts):
                counts = merge_columns(counts, BAND_THRESHOLDS)
            resampled.append(_curves(counts, weights[:, index], band_grid))
        if curves:
            low, high = percentile_interval(np.mean(resampled, axis=0), axis=0)
            bands.append(Band(label, grid, np.mean(curves, axis=0), band_grid, low, high, legends.get(label, label)))
    return bands


def curve_legends(intervals: list[IntervalTable], dataset: str, protocol: str, preset: str, blur: str,
             class_name: str, metric: str) -> dict[str, str]:
    """Per method column "<label>: value [low, high]" of the class's row in the interval table
    of `metric` (image AUC: of any blur policy, it does not depend on it); {} where none."""
    tables = [t for t in intervals if not t.by_defect and t.key["metric"] == metric
              and (t.key["dataset"], t.key["protocol"], t.key["preset"]) == (dataset, protocol, preset)
              and (t.key["blur"] == blur or metric == IMAGE_AUC)]
    if not tables:
        return {}
    table = next((t for t in tables if t.key["blur"] == blur), tables[0])
    legends = {}
    for column in table.columns:
        cell = table.cell(class_name, column)
        if cell is not None:
            legends[column] = f"{column}: {format_interval(cell.value, cell.low, cell.high)}"
    return legends
