"""Counts, AUPRO, bootstrap and DeLong against independent computations (sklearn, brute force,
a literal threshold sweep, hand-worked cases)."""
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from xadbench.metrics import bootstrap, counts
from xadbench.metrics.aupro import aupro, pro_curve
from xadbench.metrics.delong import delong_test, structural_components


# ---- order keys and counts -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_order_keys_sort_like_the_floats(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-6, 4, 500),
                        [0.0, -0.0, np.finfo(dtype).tiny, -np.finfo(dtype).tiny, np.finfo(dtype).max]]).astype(dtype)
    keys = counts.order_keys(x)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(keys[order].astype(np.float64)) >= 0)
    # Equal floats (0.0 and -0.0 included) and only they share a key.
    assert np.array_equal(x[:, None] == x[None, :], keys[:, None] == keys[None, :])


def test_order_keys_reject_non_finite():
    with pytest.raises(ValueError, match="NaN or inf"):
        counts.order_keys(np.array([0.0, np.nan], dtype=np.float32))


def _tied_maps(rng, n_images, shape, dtype, levels=None):
    maps, masks = [], []
    for i in range(n_images):
        mask = np.zeros(shape, dtype=bool)
        if i % 3:  # every third image nominal
            y, x = rng.integers(0, shape[0] - 3), rng.integers(0, shape[1] - 3)
            mask[y:y + rng.integers(1, 4), x:x + rng.integers(1, 4)] = True
            mask |= rng.random(shape) < 0.05
        score = rng.standard_normal(shape) + 1.2 * mask
        if levels:
            score = np.round(score * levels) / levels
        maps.append(score.astype(dtype))
        masks.append(mask)
    return maps, masks


@pytest.mark.parametrize("dtype,levels", [(np.float16, None), (np.float32, 4), (np.float32, None), (np.float64, 2)])
def test_image_counts_give_sklearns_pooled_auc(dtype, levels):
    rng = np.random.default_rng(1)
    maps, masks = _tied_maps(rng, 9, (12, 10), dtype, levels)
    c = counts.ImageCounts(maps, masks)
    flat_maps = np.concatenate([m.ravel() for m in maps])
    assert np.array_equal(c.values, np.unique(flat_maps.astype(np.float64)))
    ones = np.ones((1, len(maps)))
    expected = roc_auc_score(np.concatenate([y.ravel() for y in masks]), flat_maps)
    assert abs(counts.auc_from_counts(counts.rows(ones, c.pos), counts.rows(ones, c.neg))[0] - expected) <= 1e-12


def test_exact_auc_from_counts_hand_worked():
    # values 0.1 < 0.4 < 0.8; pos at 0.4 and 0.8, neg at 0.1 and 0.4 -> (1/2 + 1 + 2) / 4 pairs.
    assert counts.exact_auc_from_counts([0, 1, 1], [1, 1, 0]) == 0.875


# ---- AUPRO -----------------------------------------------------------------------------------

def literal_aupro(maps, masks, max_fpr=0.3):
    """From the definition: at each distinct threshold, mean region overlap and nominal FPR;
    trapezoid up to max_fpr with the last segment interpolated; divided by max_fpr."""
    regions = []
    for i, y in enumerate(masks):
        labels, n = ndimage.label(y, structure=np.ones((3, 3)))
        regions += [(i, labels == r) for r in range(1, n + 1)]
    nominal = sum(int((~y).sum()) for y in masks)
    points = [(0.0, 0.0)]
    for t in sorted({float(v) for m in maps for v in np.asarray(m, dtype=np.float64).ravel()}, reverse=True):
        above = [np.asarray(m, dtype=np.float64) >= t for m in maps]
        pro = np.mean([above[i][r].mean() for i, r in regions])
        fpr = sum(int((a & ~y).sum()) for a, y in zip(above, masks)) / nominal
        points.append((fpr, pro))
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= max_fpr:
            break
        if x1 > max_fpr:
            y1 = y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)
            x1 = max_fpr
        area += (x1 - x0) * (y0 + y1) / 2
    return area / max_fpr


def test_aupro_hand_worked():
    # Regions {0} and {2,3}; nominal scores 0.85, 0.2, 0.1. At 0.9: PRO (1+0)/2, FPR 0; at 0.85
    # FPR jumps to 1/3 > 0.3 with PRO still 1/2: area 0.3 * 1/2, normalised 1/2.
    m = np.array([[0.9, 0.85, 0.8, 0.7, 0.2, 0.1]])
    y = np.array([[1, 0, 1, 1, 0, 0]], dtype=bool)
    assert aupro([m], [y]) == pytest.approx(0.5, abs=1e-12)


def test_aupro_uses_eight_connectivity():
    # Diagonal neighbours make one region of 3 pixels (8-connected): PRO at the top score is 1/3,
    # not the 1/2 of two 4-connected regions {(0,0)} and {(1,1),(1,2)}; FPR then jumps to 1/3.
    m = np.array([[0.9, 0.5, 0.4], [0.6, 0.1, 0.2]])
    y = np.array([[1, 0, 0], [0, 1, 1]], dtype=bool)
    assert aupro([m], [y]) == pytest.approx(1 / 3, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("levels", [None, 3])
def test_aupro_matches_a_literal_threshold_sweep(seed, levels):
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for i in range(5):
        y = np.zeros((14, 14), dtype=bool)
        if i:  # several regions per anomalous image, of different sizes
            for _ in range(rng.integers(1, 4)):
                r, c = rng.integers(0, 11, 2)
                y[r:r + rng.integers(1, 4), c:c + rng.integers(1, 4)] = True
        m = rng.standard_normal(y.shape) + 0.8 * y
        maps.append(np.round(m * levels) / levels if levels else m)
        masks.append(y)
    assert aupro(maps, masks) == pytest.approx(literal_aupro(maps, masks), abs=1e-12)
    fpr, pro = pro_curve(maps, masks)
    assert fpr[0] == pro[0] == 0 and fpr[-1] == pytest.approx(1) and pro[-1] == pytest.approx(1)


# ---- bootstrap -------------------------------------------------------------------------------

def test_stratified_weights_keep_each_class_size_and_subset():
    labels = np.array([0, 0, 0, 1, 1, 0, 1])
    subset = np.array([1, 1, 1, 1, 0, 1, 1], dtype=bool)
    w = bootstrap.stratified_weights(labels, 200, seed=3, subset=subset)
    assert np.all(w[:, ~subset] == 0)
    assert np.all(w[:, (labels == 0) & subset].sum(axis=1) == 4)
    assert np.all(w[:, (labels == 1) & subset].sum(axis=1) == 2)
    assert np.array_equal(w, bootstrap.stratified_weights(labels, 200, seed=3, subset=subset))
    assert not np.array_equal(w, bootstrap.stratified_weights(labels, 200, seed=4, subset=subset))
    # Every image of the subset is drawn in some resample.
    assert np.all(w[:, subset].sum(axis=0) > 0)


@pytest.mark.parametrize("dtype,levels,dense_fill", [(np.float16, None, 4), (np.float32, None, 4), (np.float32, 3, 10**9)])
def test_resampled_metrics_equal_the_metrics_of_the_resampled_images(dtype, levels, dense_fill, monkeypatch):
    monkeypatch.setattr(counts, "DENSE_FILL", dense_fill)  # dense and sparse count matrices
    rng = np.random.default_rng(5)
    maps, masks = _tied_maps(rng, 10, (9, 11), dtype, levels)
    labels = np.array([y.any() for y in masks])
    scores = np.round(rng.standard_normal(len(maps)) + labels, 1)
    test_set = bootstrap.TestSet(scores, labels, maps, masks)
    weights = bootstrap.stratified_weights(labels, 5, seed=0)
    pixel = test_set.pixel_auc_resamples(weights)
    image = test_set.image_auc_resamples(weights)
    per_image = test_set.per_image_pixel_auc_resamples(weights)
    pro = test_set.aupro_resamples(weights)
    for b, w in enumerate(weights.astype(int)):
        chosen = np.repeat(np.arange(len(maps)), w)
        flat_y = np.concatenate([masks[i].ravel() for i in chosen])
        flat_m = np.concatenate([maps[i].ravel() for i in chosen])
        assert abs(pixel[b] - roc_auc_score(flat_y, flat_m)) <= 1e-9
        assert abs(image[b] - roc_auc_score(labels[chosen], scores[chosen])) <= 1e-9
        own = [roc_auc_score(masks[i].ravel(), maps[i].ravel()) for i in chosen if 0 < masks[i].sum() < masks[i].size]
        assert per_image[b] == pytest.approx(np.mean(own), abs=1e-12)
        assert pro[b] == pytest.approx(literal_aupro([maps[i] for i in chosen], [masks[i] for i in chosen]), abs=1e-9)


def test_percentile_interval():
    low, high = bootstrap.percentile_interval(np.arange(1001, dtype=float))
    assert (low, high) == (pytest.approx(25.0), pytest.approx(975.0))


# ---- DeLong ----------------------------------------------------------------------------------

def _psi(x, y):
    return 1.0 if x > y else 0.5 if x == y else 0.0


def test_structural_components_match_brute_force():
    rng = np.random.default_rng(2)
    labels = rng.random(40) < 0.4
    scores = np.round(rng.standard_normal(40) + labels, 1)  # ties
    pos, neg = scores[labels], scores[~labels]
    v10, v01 = structural_components(scores, labels)
    assert np.allclose(v10, [np.mean([_psi(x, y) for y in neg]) for x in pos])
    assert np.allclose(v01, [np.mean([_psi(x, y) for x in pos]) for y in neg])
    assert v10.mean() == pytest.approx(roc_auc_score(labels, scores))


def test_delong_variance_matches_the_papers_formula_by_brute_force():
    rng = np.random.default_rng(3)
    labels = rng.random(30) < 0.5
    a = rng.standard_normal(30) + labels
    b = a + rng.standard_normal(30) * 0.8
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    m, n = len(pos), len(neg)
    comps = {}
    for name, s in (("a", a), ("b", b)):
        comps[name] = (np.array([np.mean([_psi(s[i], s[j]) for j in neg]) for i in pos]),
                       np.array([np.mean([_psi(s[i], s[j]) for i in pos]) for j in neg]))

    def cov(u, v):
        return np.sum((u - u.mean()) * (v - v.mean())) / (len(u) - 1)

    var = sum(
        (cov(comps["a"][k], comps["a"][k]) + cov(comps["b"][k], comps["b"][k]) - 2 * cov(comps["a"][k], comps["b"][k])) / size
        for k, size in ((0, m), (1, n))
    )
    result = delong_test(a, b, labels)
    assert result.std_error == pytest.approx(np.sqrt(var))
    assert result.difference == pytest.approx(roc_auc_score(labels, a) - roc_auc_score(labels, b))


def test_delong_hand_worked():
    # Positives 0.9, 0.6; negatives 0.7, 0.1. A: pairs 0.9>0.7, 0.9>0.1, 0.6<0.7, 0.6>0.1 -> 3/4.
    # V10 = (1, 1/2), V01 = (1/2, 1). B ranks perfectly: AUC 1, all components 1.
    # Var = var(V10_A)/2 + var(V01_A)/2 = 0.125/2 + 0.125/2 = 0.125 -> SE 0.35355.
    labels = np.array([1, 1, 0, 0])
    result = delong_test(np.array([0.9, 0.6, 0.7, 0.1]), np.array([0.9, 0.8, 0.2, 0.1]), labels)
    assert (result.auc_a, result.auc_b) == (0.75, 1.0)
    assert result.std_error == pytest.approx(np.sqrt(0.125))
    assert result.z == pytest.approx(-0.25 / np.sqrt(0.125))
