"""Scores as counts over their sorted distinct values: the representation behind the O(n)
pooled pixel AUC, the bootstrap and AUPRO.

Every ROC-type statistic depends on the scores only through their order. Two vectors `pos[k]`
and `neg[k]` (how many positive and negative pixels take the k-th smallest distinct value) hold
all the information the AUC needs:

    2 · P · N · AUC = Σ_k pos[k] · (2 · Σ_{j<k} neg[j] + neg[k])

(a positive beats every negative below it and ties count 1/2, as in
`sklearn.metrics.roc_auc_score`). Float scores become order-preserving unsigned integer keys
(IEEE bits with the sign folded, -0.0 and 0.0 sharing one key), so counting needs no comparison
sort: float16 maps, and float32 maps whose values are all float16 levels, have few possible
keys (`level_keys`: 2**16 and 2**19) and are counted with `np.bincount` in O(n). Other maps take
the distinct values from one sort (`np.unique`).

Kept per image (rows) the counts make a resample of test images a weighted sum of rows, i.e. a
matrix product (`bootstrap.py`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

#: Distinct values of float16: every 16-bit pattern.
FLOAT16_KEYS = 1 << 16
#: A per-image count matrix is kept dense while its dense form is at most this many times the
#: number of its non-zero entries; beyond, it is a scipy CSR matrix.
DENSE_FILL = 4


def order_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned integer keys that sort like the float `values` (float16 → uint16, float32 →
    uint32, float64 → uint64); -0.0 and 0.0 get the same key. Raises ValueError on NaN/inf."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("scores contain NaN or inf")
    unsigned = np.dtype(f"u{values.dtype.itemsize}")
    width = 8 * values.dtype.itemsize
    keys = (values + values.dtype.type(0)).view(unsigned)  # a copy; x + 0 turns -0.0 into 0.0
    # Negative floats: flip all bits; positive ones: set the sign bit (above every negative).
    flip = keys >> unsigned.type(width - 1)
    flip *= unsigned.type((1 << (width - 1)) - 1)
    flip |= unsigned.type(1 << (width - 1))
    keys ^= flip
    return keys


def level_keys(values: np.ndarray) -> tuple[np.ndarray, int] | None:
    """Order-preserving keys of few bits for float16 levels, or None when `values` are not.

    float16 values: their 16-bit `order_keys`. float32 values whose lowest 13 mantissa bits are
    zero (every float16 level is such a float32): the top 19 bits of their `order_keys`. Returns
    (keys as uint32, bits). Computed with integer operations only (numpy's float16 arithmetic
    is emulated and slow); NaN and inf get keys too, at both ends (`finite_key_range`), and
    -0.0 keeps a key of its own just below 0.0 (`zero_keys`), both for the caller to handle."""
    values = np.asarray(values)
    if values.dtype == np.float16:
        bits = values.view(np.uint16).astype(np.uint32)
        return np.where(bits & 0x8000, ~bits & 0xFFFF, bits | 0x8000), 16
    if values.dtype != np.float32:
        return None
    bits = values.view(np.uint32)
    if (bits & np.uint32(0x1FFF)).any():
        return None
    # As `order_keys`, in place on one copy: negative values flip all bits, others set the sign.
    keys = bits >> np.uint32(31)
    keys *= np.uint32(0x7FFFFFFF)
    keys |= np.uint32(0x80000000)
    keys ^= bits
    keys >>= np.uint32(13)
    return keys, 19


def finite_key_range(bits: int) -> tuple[int, int]:
    """The smallest and largest `level_keys` key of a finite value."""
    top = (0x7BFF | 0x8000) if bits == 16 else ((0x7F7FFFFF | 0x80000000) >> 13)
    return (1 << bits) - 1 - top, top


def zero_keys(bits: int) -> tuple[int, int]:
    """The `level_keys` keys of -0.0 and 0.0 (adjacent)."""
    zero = 1 << (bits - 1)
    return zero - 1, zero


def level_histograms(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Pooled (pos, neg) counts over every key of `level_keys` in O(n), one `np.bincount` per
    image (mask bit above the key bits), -0.0 counted as 0.0; None when a map is not float16
    levels or the maps mix float16 and float32. Raises ValueError on NaN/inf."""
    hist, width = None, None
    for m, y in zip(maps, masks):
        found = level_keys(m)
        if found is None or (width is not None and found[1] != width):
            return None
        keys, width = found
        keys = keys.ravel()
        keys |= np.asarray(y, dtype=bool).ravel().astype(np.uint32) << width
        counted = np.bincount(keys, minlength=2 << width)
        hist = counted if hist is None else hist + counted
    if hist is None:
        return None
    neg, pos = hist[:1 << width], hist[1 << width:]
    low, high = finite_key_range(width)
    if (neg[:low].any() or neg[high + 1:].any() or pos[:low].any() or pos[high + 1:].any()):
        raise ValueError("scores contain NaN or inf")
    minus, plus = zero_keys(width)
    for h in (neg, pos):
        h[plus] += h[minus]
        h[minus] = 0
    return pos, neg


def auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """ROC AUC from counts over ascending distinct values; the last axis is the value axis, any
    leading axes are a batch. Exact while every partial sum of pos · neg stays below 2**53
    (float64 integers), e.g. up to ~10**8 pixels."""
    pos = np.asarray(pos, dtype=np.float64)
    neg = np.asarray(neg, dtype=np.float64)
    below = np.cumsum(neg, axis=-1) - neg  # negatives strictly below each value
    twice = np.einsum("...k,...k->...", pos, 2 * below + neg)
    n_pos, n_neg = pos.sum(axis=-1), neg.sum(axis=-1)
    if np.any(n_pos == 0) or np.any(n_neg == 0):
        raise ValueError("ROC AUC needs both classes; a set has no positives or no negatives")
    return twice / (2 * n_pos * n_neg)


def exact_auc_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    """`auc_from_counts` for one pair of 1-D integer count vectors in int64 arithmetic (exact for
    fewer than 4·10**9 scores), rounded once by the final division."""
    pos = np.asarray(pos, dtype=np.int64)
    neg = np.asarray(neg, dtype=np.int64)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    below = np.cumsum(neg) - neg
    twice = int(np.dot(pos, 2 * below + neg))
    return twice / (2 * n_pos * n_neg)


class ImageCounts:
    """Per-image counts over the sorted distinct values of a pooled set of maps.

    `values` (K,) are the distinct values ascending; `rows(weights)` gives the pooled counts of
    a reweighting of images. Each of `pos`, `neg` (and any other per-pixel weighting added with
    `weighted`) is an (images × K) matrix, dense or scipy CSR (see DENSE_FILL)."""

    def __init__(self, maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]):
        if len(maps) != len(masks):
            raise ValueError(f"got {len(maps)} maps but {len(masks)} masks")
        self.masks = [np.asarray(y, dtype=bool) for y in masks]
        for i, (m, y) in enumerate(zip(maps, self.masks)):
            if np.shape(m) != y.shape:
                raise ValueError(f"image {i}: map shape {np.shape(m)} differs from mask shape {y.shape}")
        levels = [level_keys(m) for m in maps]
        if levels and all(found is not None and found[1] == levels[0][1] for found in levels):
            self._count_levels([keys.ravel() for keys, _ in levels], levels[0][1])
        else:
            keys = [order_keys(np.asarray(m, dtype=np.float64)).ravel() for m in maps]
            distinct = np.unique(np.concatenate(keys))
            self.keys = [np.searchsorted(distinct, k).astype(np.int32) for k in keys]
            self.values = _float64_from_keys(distinct)
        self.n_images = len(maps)
        self.pos = self._matrix(np.bincount(k[y.ravel()], minlength=self.n_values) for k, y in zip(self.keys, self.masks))
        self.neg = self._matrix(np.bincount(k[~y.ravel()], minlength=self.n_values) for k, y in zip(self.keys, self.masks))

    def _count_levels(self, keys: list[np.ndarray], width: int) -> None:
        """O(n): the keys present come from a bincount over all 2**width level keys."""
        present = np.zeros(1 << width, dtype=bool)
        for k in keys:
            present |= np.bincount(k, minlength=1 << width) > 0
        low, high = finite_key_range(width)
        if present[:low].any() or present[high + 1:].any():
            raise ValueError("scores contain NaN or inf")
        minus, plus = zero_keys(width)
        present[plus] |= present[minus]
        present[minus] = False
        column = np.cumsum(present) - 1
        column[minus] = column[plus]
        column = column.astype(np.uint16 if present.sum() <= 1 << 16 else np.int32)
        self.keys = [column[k] for k in keys]
        found = np.flatnonzero(present).astype(np.uint32)
        if width == 16:
            self.values = _float16_from_keys(found).astype(np.float64)
        else:
            # Negative values' keys had their low 13 bits (zeros, flipped to ones) cut off.
            low_bits = np.where(found & (1 << 18), 0, 0x1FFF).astype(np.uint32)
            self.values = _float32_from_keys((found << 13) | low_bits).astype(np.float64)

    @property
    def n_values(self) -> int:
        return len(self.values)

    def weighted(self, pixel_weights: Iterable[np.ndarray]):
        """(images × K) matrix: row i sums pixel_weights[i] (flat, one per pixel) over the pixels
        of each value. An iterable, so one image's weights at a time need to exist."""
        return self._matrix(np.bincount(k, weights=w, minlength=self.n_values)
                            for k, w in zip(self.keys, pixel_weights))

    def _matrix(self, image_rows: Iterable[np.ndarray]):
        """Stack per-image rows of length K: dense, or CSR where mostly zeros (DENSE_FILL)."""
        parts, nnz = [], 0
        for sums in image_rows:
            cols = np.flatnonzero(sums)
            parts.append((cols, sums[cols].astype(np.float64)))
            nnz += len(cols)
        k = self.n_values
        if self.n_images * k <= DENSE_FILL * max(nnz, 1):
            dense = np.zeros((self.n_images, k))
            for i, (cols, vals) in enumerate(parts):
                dense[i, cols] = vals
            return dense
        indptr = np.cumsum([0] + [len(c) for c, _ in parts])
        return sparse.csr_matrix(
            (np.concatenate([v for _, v in parts]), np.concatenate([c for c, _ in parts]), indptr),
            shape=(self.n_images, k),
        )


def rows(weights: np.ndarray, matrix) -> np.ndarray:
    """weights (B × images) @ matrix (images × K) → (B × K) dense, for a dense or CSR matrix."""
    if sparse.issparse(matrix):
        return np.asarray((matrix.T @ weights.T).T)
    return weights @ matrix


def _float16_from_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of `order_keys` for float16."""
    keys = keys.astype(np.uint16)
    sign = np.uint16(1 << 15)
    return np.where(keys & sign, keys & ~sign, ~keys).astype(np.uint16).view(np.float16)


def _float32_from_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of `order_keys` for float32."""
    keys = keys.astype(np.uint32)
    sign = np.uint32(1 << 31)
    return np.where(keys & sign, keys & ~sign, ~keys).astype(np.uint32).view(np.float32)


def _float64_from_keys(keys: np.ndarray) -> np.ndarray:
    """Inverse of `order_keys` for float64."""
    keys = keys.astype(np.uint64)
    sign = np.uint64(1 << 63)
    return np.where(keys & sign, keys & ~sign, ~keys).astype(np.uint64).view(np.float64)
