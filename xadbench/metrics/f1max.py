"""Pixel F1-max: the best F1 score over every threshold of the pooled pixel scores, as
anomaly-detection papers and anomalib (`F1Max`) report it.

At a threshold t a pixel is called anomalous when its score is ≥ t; with TP(t) and FP(t) the
anomalous and nominal pixels so called and P the anomalous pixels, F1(t) = 2·TP / (TP + FP + P)
(= 2·precision·recall / (precision + recall)). Exact: every distinct score of the pooled pixels
is a threshold (no grid), and TP, FP at all of them are suffix sums of the counts of anomalous
and nominal pixels per distinct value (O(n) for float16 maps, one sort otherwise); the
bootstrap's resamples sum the per-image count rows of `counts.ImageCounts` like the pixel AUC's.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xadbench.metrics.bootstrap import TestSet, batched
from xadbench.metrics.counts import level_histograms, order_keys, rows


def f1_max_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """F1-max from anomalous and nominal counts over ascending distinct values (last axis; any
    leading axes are a batch). Raises ValueError when a set has no anomalous pixel."""
    tp = np.cumsum(np.asarray(pos, dtype=np.float64)[..., ::-1], axis=-1)  # threshold at each value, top down
    fp = np.cumsum(np.asarray(neg, dtype=np.float64)[..., ::-1], axis=-1)
    n_pos = tp[..., -1:]
    if np.any(n_pos == 0):
        raise ValueError("F1-max needs anomalous pixels; a set has none")
    return (2 * tp / (tp + fp + n_pos)).max(axis=-1)


def pixel_f1_max(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """Pooled pixel F1-max of maps at their masks' resolution, from the pooled counts over
    distinct values: counted in O(n) when the maps hold float16 levels (as pixel AUC,
    `counts.level_histograms`), else by sorting order-preserving keys (`_f1_max_sorting`)."""
    if len(maps) != len(masks):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
    for i, (m, y) in enumerate(zip(maps, masks)):
        if np.shape(m) != np.shape(y):
            raise ValueError(f"image {i}: map shape {np.shape(m)} differs from mask shape {np.shape(y)}")
    counted = level_histograms(maps, masks)
    if counted is None:
        return _f1_max_sorting(maps, masks)
    return float(f1_max_from_counts(*counted))


def _f1_max_sorting(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float:
    """F1-max from the sorted order keys of the anomalous and the nominal pixels. Between two
    consecutive anomalous values a higher threshold keeps TP and can only lower FP, so the best
    F1 is at a threshold equal to an anomalous pixel's value: only those are evaluated."""
    # Keys of the maps' own width (uint32 for float32 maps, as `evaluator.pixel_auc_sorting`): no
    # ties invented, and narrower keys sort faster.
    wide = any(np.asarray(m).dtype.itemsize > 4 for m in maps)
    scores = np.concatenate([np.asarray(m, dtype=np.float64 if wide else np.float32).ravel() for m in maps])
    keys = order_keys(scores)
    labels = np.concatenate([np.asarray(y, dtype=bool).ravel() for y in masks])
    pos, neg = keys[labels], keys[~labels]
    pos.sort()
    neg.sort()
    if len(pos) == 0:
        raise ValueError("F1-max needs anomalous pixels; a set has none")
    thresholds = pos[np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])]
    tp = len(pos) - np.searchsorted(pos, thresholds, "left")
    fp = len(neg) - np.searchsorted(neg, thresholds, "left")
    return float((2 * tp / (tp + fp + len(pos))).max())


def f1_max_resamples(test_set: TestSet, weights: np.ndarray) -> np.ndarray:
    """Pooled pixel F1-max of each reweighting of the test images (rows of `weights`)."""
    pixels = test_set.pixels
    return batched(weights, pixels.n_values,
                   lambda w: f1_max_from_counts(rows(w, pixels.pos), rows(w, pixels.neg)))
