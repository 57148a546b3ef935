"""DeLong's test for two correlated ROC AUCs on the same test images (DeLong, DeLong &
Clarke-Pearson, "Comparing the areas under two or more correlated receiver operating
characteristic curves: a nonparametric approach", Biometrics 44, 1988).

For a score vector with positives X_1..X_m and negatives Y_1..Y_n, ψ(x, y) = 1 if x > y, 1/2 if
x = y, 0 otherwise. The structural components are V10_i = (1/n) Σ_j ψ(X_i, Y_j) (per positive)
and V01_j = (1/m) Σ_i ψ(X_i, Y_j) (per negative); the AUC is their mean. For two methods A, B,
S10 and S01 are the 2×2 sample covariances (ddof=1) of the components, and
Var(AUC_A − AUC_B) = (S10_AA + S10_BB − 2 S10_AB) / m + (S01_AA + S01_BB − 2 S01_AB) / n.
The components come from midranks (Sun & Xu, IEEE SPL 2014) in O(N log N) instead of m·n pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


def structural_components(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V10 per positive, V01 per negative) of one score vector."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    pos, neg = scores[labels], scores[~labels]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs positives and negatives")
    combined = stats.rankdata(scores)  # midranks: ties share the mean rank
    # A positive's midrank among all minus among the positives = #neg below + 1/2 #neg tied.
    v10 = (combined[labels] - stats.rankdata(pos)) / n
    v01 = 1 - (combined[~labels] - stats.rankdata(neg)) / m
    return v10, v01


@dataclass(frozen=True)
class DeLongResult:
    auc_a: float
    auc_b: float
    difference: float
    std_error: float
    z: float
    p_value: float
    low: float
    high: float


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, labels: np.ndarray,
                confidence: float = 0.95) -> DeLongResult:
    """Two-sided test of AUC_A = AUC_B, with the normal-approximation interval of the difference."""
    a10, a01 = structural_components(scores_a, labels)
    b10, b01 = structural_components(scores_b, labels)
    s10 = np.cov(np.vstack([a10, b10]))
    s01 = np.cov(np.vstack([a01, b01]))
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / len(a10) + contrast @ s01 @ contrast / len(a01)
    difference = float(a10.mean() - b10.mean())
    std_error = float(np.sqrt(max(variance, 0.0)))
    if std_error == 0:
        z, p = (0.0, 1.0) if difference == 0 else (np.copysign(np.inf, difference), 0.0)
    else:
        z = difference / std_error
        p = float(2 * stats.norm.sf(abs(z)))
    half = stats.norm.ppf((1 + confidence) / 2) * std_error
    return DeLongResult(float(a10.mean()), float(b10.mean()), difference, std_error, float(z), p,
                        difference - half, difference + half)
