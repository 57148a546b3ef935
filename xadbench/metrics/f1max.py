"""Pixel F1-max: the best F1 score over every threshold of the pooled pixel scores, as
anomaly-detection papers and anomalib (`F1Max`) report it.

At a threshold t a pixel is called anomalous when its score is ≥ t; with TP(t) and FP(t) the
anomalous and nominal pixels so called and P the anomalous pixels, F1(t) = 2·TP / (TP + FP + P)
(= 2·precision·recall / (precision + recall)). Exact: every distinct score of the pooled pixels
is a threshold (no grid), and TP, FP at all of them are suffix sums of the per-value counts of
`counts.ImageCounts` (O(n) for float16 maps, one sort otherwise), so the bootstrap's resamples
are sums of per-image count rows like the pixel AUC's.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xadbench.metrics.bootstrap import TestSet, batched
from xadbench.metrics.counts import ImageCounts, rows


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
    """Pooled pixel F1-max of maps at their masks' resolution."""
    counts = ImageCounts(maps, masks)
    pooled = [np.asarray(m.sum(axis=0)).ravel() for m in (counts.pos, counts.neg)]
    return float(f1_max_from_counts(*pooled))


def f1_max_resamples(test_set: TestSet, weights: np.ndarray) -> np.ndarray:
    """Pooled pixel F1-max of each reweighting of the test images (rows of `weights`)."""
    pixels = test_set.pixels
    return batched(weights, pixels.n_values,
                   lambda w: f1_max_from_counts(rows(w, pixels.pos), rows(w, pixels.neg)))
