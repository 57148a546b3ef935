"""Stratified bootstrap over test images (Efron & Tibshirani, "An Introduction to the
Bootstrap", 1993, ch. 13: percentile intervals).

A resample draws the nominal and the anomalous test images separately with replacement (each
class keeps its size, so every resample has both classes); the pixels of an image stay together.
A resample is therefore a vector of multiplicities over the images, and every metric of it is a
weighted sum of per-image terms: per-image counts over the pooled set's sorted distinct values
(`counts.ImageCounts`) turn a batch of resamples into one matrix product, and each resample's
pooled pixel AUC is the exact AUC of the resampled pixels.

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

RESAMPLES = 1000
CONFIDENCE = 0.95
#: Resamples per matrix product: bounds the (batch × K) temporaries.
BATCH_ELEMENTS = 1 << 23


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


def _batched(weights: np.ndarray, n_values: int, fn) -> np.ndarray:
    step = max(1, BATCH_ELEMENTS // max(n_values, 1))
    return np.concatenate([fn(weights[i:i + step]) for i in range(0, len(weights), step)])


class TestSet:
    """One method's predictions on one test set: image scores and labels, and (optionally) maps
    and masks at one resolution. Builds the per-image counts once."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray,
                 maps: Sequence[np.ndarray] | None = None, masks: Sequence[np.ndarray] | None = None):
        self.labels = np.asarray(labels).astype(bool)
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.labels.shape:
            raise ValueError(f"got {scores.shape} scores for {self.labels.shape} labels")
        # Image scores as counts: image i is one "pixel" with its own score.
        distinct, column = np.unique(scores, return_inverse=True)
        onehot = sparse.csr_matrix((np.ones(len(scores)), (np.arange(len(scores)), column)),
                                   shape=(len(scores), len(distinct)))
        self._image_pos = onehot.multiply(self.labels[:, None].astype(float)).tocsr()
        self._image_neg = onehot.multiply((~self.labels)[:, None].astype(float)).tocsr()
        self.pixels = self.regions = self._per_image_auc = None
        if maps is not None:
            self.pixels = ImageCounts(maps, masks)
            self._per_image_auc = np.array([self._own_auc(i) for i in range(len(maps))])

    def _own_auc(self, i: int) -> float:
        """Image i's own pixel AUC, NaN when its mask has one class only."""
        pos, neg = self.pixels.pos[i], self.pixels.neg[i]
        pos = pos.toarray()[0] if sparse.issparse(pos) else pos
        neg = neg.toarray()[0] if sparse.issparse(neg) else neg
        if pos.sum() == 0 or neg.sum() == 0:
            return np.nan
        return float(auc_from_counts(pos, neg))

    def image_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        return _batched(weights, self._image_pos.shape[1], lambda w: auc_from_counts(
            rows(w, self._image_pos), rows(w, self._image_neg)))

    def pixel_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        """Exact pooled pixel AUC of each resample's pixels."""
        return _batched(weights, self.pixels.n_values, lambda w: auc_from_counts(
            rows(w, self.pixels.pos), rows(w, self.pixels.neg)))

    def per_image_pixel_auc_resamples(self, weights: np.ndarray) -> np.ndarray:
        """Mean of the images' own pixel AUCs over a resample's images with both pixel classes."""
        eligible = ~np.isnan(self._per_image_auc)
        counted = weights[:, eligible]
        return counted @ self._per_image_auc[eligible] / counted.sum(axis=1)

    def aupro_resamples(self, weights: np.ndarray) -> np.ndarray:
        if self.regions is None:
            self.regions = RegionCounts(self.pixels)
        return _batched(weights, self.pixels.n_values, lambda w: aupro_resamples(self.regions, w))
