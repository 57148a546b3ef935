"""Exact, lean ROC AUCs for detection and explanation (paper section 4).

Pure functions over numpy arrays: no I/O, no plotting. Higher scores mean more anomalous; label
True (1) marks an anomaly (positive). Ties are counted exactly like
`sklearn.metrics.roc_auc_score`: a positive and a negative with equal scores count 1/2.

The AUC is the Mann-Whitney statistic
    AUC = (#{pos > neg} + 1/2 #{pos == neg}) / (P * N)
counted in integers, so the result is exact up to the final division, by one of two paths:

- counting (O(n)): when every score is a float16 level (float16 maps, or float32 maps holding
  float16 values), per-value counts of positives and negatives over order-preserving integer
  keys come from `np.bincount` (`metrics.counts.level_histograms`); no sort at all;
- sorting (O(n log n)): otherwise the scores become order-preserving unsigned integer keys
  (`metrics.counts.order_keys`: uint32 for float32 maps), positives and negatives are sorted
  separately in place and counted with `np.searchsorted`. Integer keys sort faster than the
  floats themselves (no NaN handling), and -0.0 and 0.0 share a key, so ties stay ties.

Peak extra memory is one copy of the scores as keys of their own width plus small buffers
(counting: one image's keys): no float64 copy and no argsort of the whole array, which matters
for MVTec-AD's pooled pixel AUC (~67 million pixels for one class).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from xadbench.metrics.counts import exact_auc_from_counts, level_histograms, order_keys

IMAGE_AUC = "image_auc"
PIXEL_AUC = "pixel_auc"
PER_IMAGE_PIXEL_AUC = "per_image_pixel_auc"

_CHUNK = 1 << 20  # query elements per searchsorted call: bounds the int64 temporaries


def _as_scores(scores) -> np.ndarray:
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    return scores


def _as_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == np.bool_:
        return labels
    if labels.size and not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be boolean or 0/1")
    return labels.astype(bool)


def _auc_sorted(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC from positives and negatives that are both sorted ascending (floats checked finite
    here; integer order keys were checked when they were made)."""
    n_pos, n_neg = len(pos), len(neg)
    if n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"ROC AUC needs both classes; got {n_pos} positives and {n_neg} negatives"
        )
    if np.issubdtype(pos.dtype, np.floating):
        for arr in (pos, neg):
            # Sorted: -inf sorts first, +inf and NaN last, so the two ends tell all.
            if not (np.isfinite(arr[0]) and np.isfinite(arr[-1])):
                raise ValueError("scores contain NaN or inf")
    # Query the smaller set against the larger one; sorted queries keep searchsorted cache-friendly.
    # 2*less + equal = left + right (for positives against negatives), so everything stays integer.
    query, table, queries_are_pos = (pos, neg, True) if n_pos <= n_neg else (neg, pos, False)
    twice = 0
    for start in range(0, len(query), _CHUNK):
        q = query[start:start + _CHUNK]
        twice += int(np.searchsorted(table, q, "left").sum(dtype=np.int64))
        twice += int(np.searchsorted(table, q, "right").sum(dtype=np.int64))
    if not queries_are_pos:
        # For each negative: 2*#{pos > n} + #{pos == n} = 2P - left - right.
        twice = 2 * n_pos * n_neg - twice
    return twice / (2 * n_pos * n_neg)  # Python ints: exact until this one rounding


def roc_auc(scores, labels) -> float:
    """Exact ROC AUC of 1-D `scores` against 1-D boolean `labels` (True = anomalous).

    Equals `sklearn.metrics.roc_auc_score(labels, scores)`, ties included, without its memory
    cost. Raises ValueError when a class is missing or a score is NaN/inf.
    """
    scores, labels = _as_scores(scores), _as_labels(labels)
    if scores.ndim != 1 or labels.ndim != 1 or scores.shape != labels.shape:
        raise ValueError(
            f"roc_auc wants 1-D scores and labels of equal length; got {scores.shape} and "
            f"{labels.shape}"
        )
    pos = scores[labels]
    neg = scores[~labels]
    pos.sort()
    neg.sort()
    return _auc_sorted(pos, neg)


def image_auc(scores, labels) -> float:
    """Detection AUC: ROC AUC of the image anomaly scores over the whole test set (paper sec. 4)."""
    return roc_auc(scores, labels)


def _image_pairs(maps, masks):
    if len(maps) != len(masks):
        raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
    for i, (m, y) in enumerate(zip(maps, masks)):
        m, y = _as_scores(m), _as_labels(y)
        if m.shape != y.shape:
            raise ValueError(
                f"image {i}: map shape {m.shape} differs from mask shape {y.shape}; "
                "resize the map to the mask's resolution first"
            )
        yield m, y


def pixel_auc(maps: Sequence, masks: Sequence) -> float:
    """Pooled pixel AUC as the paper reports it for MVTec-AD (sec. 4.2).

    One ROC over every pixel of every test image of a class, nominal images included (their masks
    are all False). `maps[i]` must already be at `masks[i]`'s resolution; sizes may differ
    between images. Counted in O(n) when all maps hold float16 levels (`pixel_auc_counting`),
    else sorted (`pixel_auc_sorting`).
    """
    counted = _level_counts(maps, masks)
    if counted is not None:
        return exact_auc_from_counts(*counted)
    return pixel_auc_sorting(maps, masks)


def _level_counts(maps: Sequence, masks: Sequence):
    pairs = list(_image_pairs(maps, masks))
    return level_histograms([m for m, _ in pairs], [y for _, y in pairs])


def pixel_auc_counting(maps: Sequence, masks: Sequence) -> float:
    """`pixel_auc` of maps holding float16 levels (float16, or float32 with float16 values) by
    counting: one `np.bincount` over order-preserving keys per image, O(n) and no sort. Raises
    ValueError for other maps."""
    counted = _level_counts(maps, masks)
    if counted is None:
        raise ValueError("pixel_auc_counting wants maps of float16 levels (float16, or float32 holding float16 values)")
    return exact_auc_from_counts(*counted)


def pixel_auc_sorting(maps: Sequence, masks: Sequence) -> float:
    """`pixel_auc` by sorting: each map's pixels become order-preserving unsigned keys of the
    map's own width (uint32 for float32 and float16, uint64 if a map is float64, so no ties are
    invented) that go straight into one buffer of positives and one of negatives, sorted in
    place, so the peak extra memory is about 4 bytes per pixel for float32 maps."""
    pairs = list(_image_pairs(maps, masks))
    n_pos = sum(int(np.count_nonzero(y)) for _, y in pairs)
    n_neg = sum(y.size for _, y in pairs) - n_pos
    wide = any(m.dtype.itemsize > 4 for m, _ in pairs)
    dtype, key_of = (np.float64, np.uint64) if wide else (np.float32, np.uint32)
    pos = np.empty(n_pos, dtype=key_of)
    neg = np.empty(n_neg, dtype=key_of)
    ip = ineg = 0
    for m, y in pairs:
        keys = order_keys(m.astype(dtype, copy=False))
        k = int(np.count_nonzero(y))
        pos[ip:ip + k] = keys[y]
        neg[ineg:ineg + y.size - k] = keys[~y]
        ip += k
        ineg += y.size - k
    pos.sort()
    neg.sort()
    return _auc_sorted(pos, neg)


def per_image_pixel_auc(maps: Sequence, masks: Sequence) -> float:
    """Mean over images of each image's own pixel AUC (not the paper's metric; see `pixel_auc`).

    Only images whose mask has at least one positive and one negative pixel count; raises
    ValueError when there is none.
    """
    aucs = [
        roc_auc(m.ravel(), y.ravel())
        for m, y in _image_pairs(maps, masks)
        if 0 < np.count_nonzero(y) < y.size
    ]
    if not aucs:
        raise ValueError("no image has both anomalous and nominal pixels")
    return float(np.mean(aucs))
