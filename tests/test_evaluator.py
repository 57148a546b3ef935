import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from xadbench import evaluator as ev


def _tied_data(rng, n, pos_rate, levels):
    labels = rng.random(n) < pos_rate
    scores = rng.integers(0, levels, n) + labels * rng.integers(0, 3, n)
    return (scores / levels).astype(np.float32), labels


def test_hand_worked_example():
    # Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4.
    assert ev.roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


def test_hand_worked_tie_counts_half():
    # Pairs: 0.4==0.4 (1/2), 0.4>0.1, 0.8>0.1, 0.8>0.4 -> 3.5 of 4.
    auc = ev.roc_auc(np.array([0.1, 0.4, 0.4, 0.8]), np.array([False, False, True, True]))
    assert auc == 0.875


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n,pos_rate,levels", [(50, 0.5, 3), (2_000, 0.03, 20), (30_000, 0.9, 200)])
def test_matches_sklearn_with_heavy_ties(seed, n, pos_rate, levels):
    rng = np.random.default_rng(seed)
    scores, labels = _tied_data(rng, n, pos_rate, levels)
    assert abs(ev.roc_auc(scores, labels) - roc_auc_score(labels, scores)) <= 1e-9


def test_small_chunks_give_the_same_result(monkeypatch):
    rng = np.random.default_rng(7)
    scores, labels = _tied_data(rng, 5_000, 0.3, 50)
    expected = roc_auc_score(labels, scores)
    monkeypatch.setattr(ev, "_CHUNK", 17)
    assert abs(ev.roc_auc(scores, labels) - expected) <= 1e-9
    assert abs(ev.roc_auc(scores, ~labels) - roc_auc_score(~labels, scores)) <= 1e-9


def test_input_is_not_modified_and_int_labels_work():
    scores = np.array([0.9, 0.1, 0.5, 0.3], dtype=np.float32)
    before = scores.copy()
    assert ev.image_auc(scores, [1, 0, 1, 0]) == 1.0
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1]])
def test_missing_class_raises(labels):
    with pytest.raises(ValueError, match="both classes"):
        ev.roc_auc(np.array([0.1, 0.2, 0.3]), np.array(labels))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores_raise(bad):
    for labels in ([0, 1, 1], [0, 0, 1]):
        with pytest.raises(ValueError, match="NaN or inf"):
            ev.roc_auc(np.array([0.1, bad, 0.3]), np.array(labels))


def test_non_binary_labels_raise():
    with pytest.raises(ValueError, match="0/1"):
        ev.roc_auc(np.array([0.1, 0.2, 0.3]), np.array([0, 1, 2]))


def _maps_and_masks(rng, shapes, nominal=()):
    maps, masks = [], []
    for i, (h, w) in enumerate(shapes):
        mask = np.zeros((h, w), bool)
        if i not in nominal:
            y, x = rng.integers(0, h - 3), rng.integers(0, w - 3)
            mask[y:y + 4, x:x + 5] = True
        maps.append(np.round(rng.random((h, w)) + mask * rng.random((h, w)), 1).astype(np.float32))
        masks.append(mask)
    return maps, masks


def test_pooled_pixel_auc_equals_sklearn_on_concatenation():
    rng = np.random.default_rng(0)
    maps, masks = _maps_and_masks(rng, [(10, 12), (20, 20), (7, 9), (16, 8)], nominal={1})
    expected = roc_auc_score(
        np.concatenate([m.ravel() for m in masks]), np.concatenate([m.ravel() for m in maps])
    )
    assert abs(ev.pixel_auc(maps, masks) - expected) <= 1e-9
    stacked = ev.pixel_auc(np.stack(maps[:1] * 3), np.stack(masks[:1] * 3))
    assert abs(stacked - roc_auc_score(masks[0].ravel(), maps[0].ravel())) <= 1e-9


def test_pixel_auc_keeps_float64_precision():
    maps = [np.array([[1.0, 1.0 + 1e-12]])]
    masks = [np.array([[False, True]])]
    assert ev.pixel_auc(maps, masks) == 1.0


def test_pixel_auc_shape_mismatch_raises():
    with pytest.raises(ValueError, match="image 0"):
        ev.pixel_auc([np.zeros((4, 4))], [np.zeros((8, 8), bool)])


def test_per_image_pixel_auc_matches_brute_force():
    rng = np.random.default_rng(1)
    maps, masks = _maps_and_masks(rng, [(10, 12), (20, 20), (7, 9), (16, 8)], nominal={2})
    masks.append(np.ones((5, 5), bool))  # all anomalous: skipped like the nominal image
    maps.append(rng.random((5, 5)).astype(np.float32))
    expected = []
    for m, y in zip(maps, masks):
        p, n = m[y], m[~y]
        if len(p) and len(n):
            wins = sum((a > b) + 0.5 * (a == b) for a in p for b in n)
            expected.append(wins / (len(p) * len(n)))
    assert len(expected) == 3
    assert abs(ev.per_image_pixel_auc(maps, masks) - np.mean(expected)) <= 1e-12


def test_per_image_pixel_auc_without_valid_image_raises():
    with pytest.raises(ValueError, match="no image"):
        ev.per_image_pixel_auc([np.zeros((3, 3))], [np.zeros((3, 3), bool)])


def test_metric_names():
    assert (ev.IMAGE_AUC, ev.PIXEL_AUC, ev.PER_IMAGE_PIXEL_AUC) == (
        "image_auc", "pixel_auc", "per_image_pixel_auc"
    )


def _level_maps(rng, dtype, n=6, shape=(15, 17), levels=8):
    maps = [(np.round(rng.standard_normal(shape) * levels) / levels).astype(dtype) for _ in range(n)]
    masks = [rng.random(shape) < 0.1 * (i % 3) for i in range(n)]
    return maps, masks


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_counting_path_equals_sklearn_and_the_sorting_path_with_heavy_ties(seed, dtype):
    rng = np.random.default_rng(seed)
    maps, masks = _level_maps(rng, dtype)
    maps[0][0, :3] = [-0.0, 0.0, -0.0]  # -0.0 and 0.0 tie
    flat_y = np.concatenate([y.ravel() for y in masks])
    flat_m = np.concatenate([m.ravel() for m in maps])
    expected = roc_auc_score(flat_y, flat_m)
    counted = ev.pixel_auc_counting(maps, masks)
    assert abs(counted - expected) <= 1e-12
    assert counted == ev.pixel_auc_sorting(maps, masks) == ev.pixel_auc(maps, masks)


def test_counting_path_refuses_maps_that_are_not_float16_levels():
    rng = np.random.default_rng(0)
    maps, masks = _level_maps(rng, np.float32)
    maps[1][2, 3] += np.float32(1e-6)
    with pytest.raises(ValueError, match="float16 levels"):
        ev.pixel_auc_counting(maps, masks)
    # pixel_auc falls back to sorting, still exact.
    flat = np.concatenate([m.ravel() for m in maps])
    assert abs(ev.pixel_auc(maps, masks) - roc_auc_score(np.concatenate([y.ravel() for y in masks]), flat)) <= 1e-12


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_counting_path_rejects_non_finite(dtype, bad):
    maps, masks = _level_maps(np.random.default_rng(1), dtype)
    maps[2][0, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        ev.pixel_auc_counting(maps, masks)


def _exact_pooled_auc(maps, masks):
    """Brute force over every (positive, negative) pixel pair, as a fraction rounded once."""
    from fractions import Fraction

    scores = np.concatenate([np.asarray(m, dtype=np.float64).ravel() for m in maps])
    labels = np.concatenate([np.asarray(y).ravel() for y in masks])
    pos, neg = scores[labels], scores[~labels]
    twice = int(2 * (pos[:, None] > neg[None, :]).sum() + (pos[:, None] == neg[None, :]).sum())
    return float(Fraction(twice, 2 * len(pos) * len(neg)))


@pytest.mark.parametrize("kind", ["continuous", "float16 levels as float32", "float16", "coarse ties", "signed zeros"])
def test_pooled_pixel_auc_is_the_exact_fraction_on_both_paths(kind):
    rng = np.random.default_rng(3)
    maps, masks = _maps_and_masks(rng, [(30, 31), (25, 20), (9, 40), (33, 33)], nominal={1})
    maps = [(m + rng.standard_normal(m.shape) * 0.3) for m in maps]
    if kind == "continuous":
        maps = [m.astype(np.float32) for m in maps]
    elif kind == "float16 levels as float32":
        maps = [m.astype(np.float16).astype(np.float32) for m in maps]
    elif kind == "float16":
        maps = [m.astype(np.float16) for m in maps]
    elif kind == "coarse ties":
        maps = [np.round(m * 2).astype(np.float32) for m in maps]
    else:  # -0.0 and 0.0 are one value, whichever class holds which
        zeros = [np.where(rng.random(m.shape) < 0.5, np.float32(-0.0), np.float32(0.0)) for m in maps]
        maps = [np.where(m > 1.2, np.float32(1.0), z) for m, z in zip(maps, zeros)]
        assert any(np.signbit(m).any() for m in maps)
    expected = _exact_pooled_auc(maps, masks)
    assert ev.pixel_auc_sorting(maps, masks) == expected
    assert ev.pixel_auc(maps, masks) == expected
    if kind != "continuous":
        assert ev.pixel_auc_counting(maps, masks) == expected
    else:
        with pytest.raises(ValueError, match="float16 levels"):
            ev.pixel_auc_counting(maps, masks)
