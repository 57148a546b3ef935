"""Stratified bootstrap over test images (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13: percentile intervals).

A resample draws the nominal and the anomalous test images separately with replacement (each
class keeps its size, so every resample has both classes); the pixels of an image stay together.
A resample is therefore a vector w of multiplicities over the images, and its metrics are
weighted sums of per-image terms, from per-image counts over the pooled set's sorted distinct
values (`counts.ImageCounts`):

- pooled pixel AUC: 2·P·N·AUC counts pairs (positive pixel, negative pixel), and a pair's images
  are drawn independently, so 2·P·N·AUC = wᵀ M w with M[i, j] the (doubled, ties 1) pair count
  between image i's positive and image j's negative pixels, and P = w·p, N = w·n. M is one
  matrix product of the count matrices, built once; each resample then costs O(images²) and is
  the exact AUC of the resampled pixels;
- image AUC and AUPRO: the pooled counts (or weighted counts) of a batch of resamples are one
  matrix product W @ C, and the statistic follows from their cumulative sums;
- per-image pixel AUC: a weighted mean of the images' own AUCs.

`TestSet` holds one method's predictions for one test set; its `*_resamples(weights)` give the
metric of every row of `weights` (B × images). Weights that are zero outside a subset of the
images (e.g. one defect type and the nominal images) give that subset's metric.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from xadbench.metrics.aupro import RegionCounts, aupro_resamples
from xadbench.metrics.counts import ImageCounts, auc_from_counts, rows

CONFIDENCE = 0.95
#: Resamples per matrix product: bounds the (batch × K) temporaries.
BATCH_ELEMENTS = 1 << 21


def stratified_weights(labels: np.ndarray, n_resamples: int, seed: int,
                       subset: np.ndarray | None = None) -> np.ndarray:
    """(n_resamples × images) multiplicities: the nominal and the anomalous images of `subset`
    (a boolean mask; default all) each drawn with replacement to their own count; 0 elsewhere."""
    labels = np.asarray(labels).astype(bool)
    subset = np.ones(len(labels), dtype=bool) if subset is None else np.asarray(subset, dtype=bool)
    rng = np.random.default_rng(seed)
    weights = np.zeros((n_resamples, len(labels)))
    for group in (np.flatnonzero(subset & ~labels), np.flatnonzero(subset & labels)):
        if len(group) == 0:
            raise ValueError("a stratified bootstrap needs nominal and anomalous images")
        draws = group[rng.integers(0, len(group), size=(n_resamples, len(group)))]
        offsets = np.arange(n_resamples)[:, None] * len(labels)
        weights += np.bincount((draws + offsets).ravel(), minlength=weights.size).reshape(weights.shape)
    return weights


def full_weights(labels: np.ndarray, subset: np.ndarray | None = None) -> np.ndarray:
    """The one-row weights of the test set itself (or of `subset`)."""
    subset = np.ones(len(labels), dtype=bool) if subset is None else np.asarray(subset, dtype=bool)
    return subset.astype(np.float64)[None]


def percentile_interval(values: np.ndarray, confidence: float = CONFIDENCE, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap `values`: its (1-c)/2 and (1+c)/2 quantiles."""
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail], axis=axis)
    return low, high


def batched(weights: np.ndarray, n_values: int, fn) -> np.ndarray:
    step = max(1, BATCH_ELEMENTS // max(n_values, 1))
    return np.concatenate([fn(weights[i:i + step]) for i in range(0, len(weights), step)])


def pair_counts(pos, neg) -> np.ndarray:
    """M[i, j] = Σ over (positive pixel of image i, negative pixel of image j) of 2 if the
    positive scores higher, 1 if they tie (doubled Mann-Whitney counts); pos, neg are (images ×
    K) count matrices over ascending values. Built one negative image at a time, so memory is
    O(images · K) at most once."""
    n_images = pos.shape[0]
    pairs = np.zeros((n_images, n_images))
    for j in range(n_images):
        negatives = neg[j].toarray()[0] if sparse.issparse(neg) else neg[j]
        if not negatives.any():
            continue
        # For each value: 2 · #negatives below it + #negatives at it.
        beaten = 2 * np.cumsum(negatives) - negatives
        pairs[:, j] = np.asarray(pos @ beaten).ravel()
    return pairs


def image_counts(scores: np.ndarray, labels: np.ndarray) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Image scores as (pos, neg) count matrices (images × distinct scores, ascending): image i
    is one "pixel" with its own score."""
    labels = np.asarray(labels).astype(bool)
    distinct, column = np.unique(np.asarray(scores, dtype=np.float64), return_inverse=True)
    onehot = sparse.csr_matrix((np.ones(len(labels)), (np.arange(len(labels)), column)),
                               shape=(len(labels), len(distinct)))
    return (onehot.multiply(labels[:, None].astype(float)).tocsr(),
            onehot.multiply((~labels)[:, None].astype(float)).tocsr())


def merge_columns(matrices: Sequence, bins: int):
    """The count matrices (same columns: distinct values ascending) with adjacent columns summed
    into at most `bins` columns of about equal pooled count. Merged values count as tied, so the
    ROC curve of the merged counts is the exact curve at the kept thresholds joined by straight
    lines (its chords)."""
    n_values = matrices[0].shape[1]
    if n_values <= bins:
        return list(matrices)
    total = sum(np.asarray(m.sum(axis=0)).ravel() for m in matrices)
    position = np.cumsum(total) / total.sum()
    column = np.minimum((position * bins).astype(np.int64), bins - 1)
    column = np.unique(column, return_inverse=True)[1]  # no empty bins
    merge = sparse.csr_matrix((np.ones(n_values), (np.arange(n_values), column)), shape=(n_values, column.max() + 1))
    return [m @ merge for m in matrices]


def curve_at(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """y of the polylines (x, y) (rows; x non-decreasing, from 0) at `grid`; where x repeats (a
    vertical step) the highest y at that x."""
    out = np.empty((len(x), len(grid)))
    for r in range(len(x)):
        j = np.searchsorted(x[r], grid, side="right") - 1  # last point with x ≤ g
        nxt = np.minimum(j + 1, x.shape[1] - 1)
        x0, x1, y0, y1 = x[r, j], x[r, nxt], y[r, j], y[r, nxt]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[r] = np.where(x1 > x0, y0 + (y1 - y0) * (grid - x0) / (x1 - x0), y0)
    return out


def roc_resamples(pos, neg, weights: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """True-positive rate at the false-positive rates `grid` of the ROC curve of each
    reweighting of the images (rows of `weights`), from (images × K) count matrices over
    ascending values: the curve runs from the highest threshold down, joining its points with
    straight lines (ties give diagonal segments, as sklearn's curve)."""
    def curves(w):
        tp = np.cumsum(rows(w, pos)[:, ::-1], axis=1)
        fp = np.cumsum(rows(w, neg)[:, ::-1], axis=1)
        zeros = np.zeros((len(w), 1))
        return curve_at(np.hstack([zeros, fp / fp[:, -1:]]), np.hstack([zeros, tp / tp[:, -1:]]), grid)
    return batched(weights, pos.shape[1], curves)


class TestSet:
    """One method's predictions on one test set: image scores and labels, and (optionally) maps
    and masks at one resolution. Builds the per-image counts once."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray,
                 maps: Sequence[np.ndarray] | None = None, masks: Sequence[np.ndarray] | None = None):
        self.labels = np.asarray(labels).astype(bool)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.labels.shape:
            raise ValueError(f"got {scores.shape} scores for {self.labels.shape} labels")
        self._image_pos, self._image_neg = image_counts(scores, self.labels)
        self.pixels = self.regions = None
        if maps is not None:
            self.pixels = ImageCounts(maps, masks)
            self._pairs = pair_counts(self.pixels.pos, self.pixels.neg)
            self._n_pos = np.asarray(self.pixels.pos.sum(axis=1)).ravel()
            self._n_neg = np.asarray(self.pixels.neg.sum(axis=1)).ravel()
            own = np.diag(self._pairs)
            with np.errstate(invalid="ignore", divide="ignore"):
                # An image's own pixel AUC; NaN when its mask has one class only.
                self._per_image_auc = np.where((self._n_pos > 0) & (self._n_neg > 0),
                                               own / (2 * self._n_pos * self._n_neg), np.nan)

    def image_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        return batched(weights, self._image_pos.shape[1], lambda w: auc_from_counts(
            rows(w, self._image_pos), rows(w, self._image_neg)))

    def pixel_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        """Exact pooled pixel AUC of each resample's pixels: wᵀ M w / (2 · w·p · w·n)."""
        twice = np.einsum("bi,ij,bj->b", weights, self._pairs, weights)
        return twice / (2 * (weights @ self._n_pos) * (weights @ self._n_neg))

    def per_image_pixel_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        """Mean of the images' own pixel AUCs over a resample's images with both pixel classes."""
        eligible = ~np.isnan(self._per_image_auc)
        counted = weights[:, eligible]
        return counted @ self._per_image_auc[eligible] / counted.sum(axis=1)

    def aupro_resamples(self, weights: np.ndarray) -> np.ndarray:
        if self.regions is None:
            self.regions = RegionCounts(self.pixels)
        return batched(weights, self.pixels.n_values, lambda w: aupro_resamples(self.regions, w))
