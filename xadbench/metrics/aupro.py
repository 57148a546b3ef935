"""AUPRO: the area under the per-region overlap (PRO) curve up to a false-positive rate of 0.3
(Bergmann et al., "MVTec AD", CVPR 2019; "The MVTec Anomaly Detection Dataset", IJCV 2021).

At a threshold t, PRO(t) is the mean over every connected ground-truth region of the test set of
the fraction of the region's pixels scoring ≥ t; FPR(t) is the fraction of nominal pixels (mask
0, anomalous images included) scoring ≥ t. Regions are the 8-connected components of each mask
(`scipy.ndimage.label` with a 3×3 structure, as the reference evaluation).

Computed exactly rather than at sampled thresholds: with each defect pixel weighted
1 / (region size × number of regions) and each nominal pixel 1 / (number of nominal pixels),
PRO and FPR at every distinct score are suffix sums of the weights over the scores sorted once
(`counts.ImageCounts`). The curve joins those points with straight lines from (0, 0); its area
up to FPR 0.3 (the last segment cut by linear interpolation, as the reference's
`trapezoid_area`) is divided by 0.3, so a perfect map scores 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, sparse

from xadbench.metrics.counts import ImageCounts, rows

AUPRO = "aupro"
MAX_FPR = 0.3
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def region_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Per pixel 1 / (size of its 8-connected region), 0 outside the mask; and the number of
    regions."""
    labels, n_regions = ndimage.label(np.asarray(mask, dtype=bool), structure=EIGHT_CONNECTED)
    sizes = np.bincount(labels.ravel())
    weights = np.zeros(labels.shape)
    inside = labels > 0
    weights[inside] = 1.0 / sizes[labels[inside]]
    return weights, n_regions


class RegionCounts:
    """What AUPRO needs of a test set, per image, over the distinct values from the highest
    down: `nominal` (images × K) nominal pixel counts; `overlap` (images × K) the sums of
    1 / region size over defect pixels; `regions` (images,) the number of regions. A
    reweighting of images gives its PRO curve."""

    def __init__(self, counts: ImageCounts):
        regions = []

        def pixel_weights():
            for y in counts.masks:
                weights, n_regions = region_weights(y)
                regions.append(n_regions)
                yield weights.ravel()

        self.nominal = _descending(counts.neg)
        self.overlap = _descending(counts.weighted(pixel_weights()))
        self.regions = np.asarray(regions, dtype=np.float64)
        self.n_nominal = np.asarray(counts.neg.sum(axis=1)).ravel()
        self.n_values = counts.n_values

    def curves(self, weights: np.ndarray, max_fpr: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(FPR, PRO), each (B × (C + 1)), for weights (B × images): (0, 0) and the points at
        the C highest distinct thresholds, C just large enough that every row reaches
        `max_fpr` (all K values for max_fpr 1)."""
        n_regions = weights @ self.regions
        if np.any(n_regions == 0):
            raise ValueError("AUPRO needs at least one anomalous region in the test set")
        n_nominal = weights @ self.n_nominal
        # Thresholds below the one where every row reaches max_fpr cannot matter: count the top
        # values only, doubling how many until every row gets there.
        used = min(self.n_values, 256)
        while True:
            fpr = np.cumsum(rows(weights, self.nominal[:, :used]), axis=1) / n_nominal[:, None]
            if used == self.n_values or np.all(fpr[:, -1] >= max_fpr):
                break
            used = min(self.n_values, 4 * used)
        pro = np.cumsum(rows(weights, self.overlap[:, :used]), axis=1) / n_regions[:, None]
        zeros = np.zeros((len(weights), 1))
        return np.hstack([zeros, fpr]), np.hstack([zeros, pro])


def _descending(matrix):
    """The columns of a count matrix from the highest value down (dense or CSR)."""
    return matrix[:, ::-1] if not sparse.issparse(matrix) else matrix[:, np.arange(matrix.shape[1])[::-1]].tocsr()


def area_up_to(x: np.ndarray, y: np.ndarray, max_x: float) -> np.ndarray:
    """Trapezoid area under the polylines (x, y) (2-D: one per row; x non-decreasing) from x[0]
    to max_x, the segment crossing max_x cut by linear interpolation."""
    x0, x1, y0, y1 = x[:, :-1], x[:, 1:], y[:, :-1], y[:, 1:]
    inside = x1 <= max_x
    area = np.where(inside, (x1 - x0) * (y0 + y1), 0.0).sum(axis=1) / 2
    # The first segment ending beyond max_x, if any, up to max_x.
    crossing = np.flatnonzero(~inside.all(axis=1))
    j = (~inside[crossing]).argmax(axis=1)
    a_x, b_x = x0[crossing, j], x1[crossing, j]
    a_y, b_y = y0[crossing, j], y1[crossing, j]
    cut_y = a_y + (b_y - a_y) * (max_x - a_x) / (b_x - a_x)  # b_x > max_x >= a_x
    area[crossing] += np.maximum(max_x - a_x, 0) * (a_y + cut_y) / 2
    return area


def aupro_resamples(regions: RegionCounts, weights: np.ndarray, max_fpr: float = MAX_FPR) -> np.ndarray:
    """Normalised AUPRO of each reweighting of the images (rows of `weights`)."""
    fpr, pro = regions.curves(weights, max_fpr)
    return area_up_to(fpr, pro, max_fpr) / max_fpr


def pro_curve(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The PRO curve of a test set: (FPR, PRO) at every distinct score, highest first, after (0, 0)."""
    regions = RegionCounts(ImageCounts(maps, masks))
    fpr, pro = regions.curves(np.ones((1, len(maps))))
    return fpr[0], pro[0]


def aupro(maps: Sequence[np.ndarray], masks: Sequence[np.ndarray], max_fpr: float = MAX_FPR) -> float:
    """Normalised area under the PRO curve up to FPR `max_fpr` (default 0.3) of maps at their
    masks' resolution."""
    regions = RegionCounts(ImageCounts(maps, masks))
    return float(aupro_resamples(regions, np.ones((1, len(maps))), max_fpr)[0])
