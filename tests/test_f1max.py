"""Pixel F1-max against sklearn's precision_recall_curve (every threshold, ties included), a
hand-worked case, and a literal resample of the test images."""
import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from xadbench.metrics import bootstrap
from xadbench.metrics.f1max import f1_max_resamples, pixel_f1_max


def sklearn_f1_max(maps, masks):
    truth = np.concatenate([np.ravel(y) for y in masks])
    scores = np.concatenate([np.ravel(m) for m in maps]).astype(np.float64)
    precision, recall, _ = precision_recall_curve(truth, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0)
    return float(f1.max())


def random_maps(seed, levels, n=10, size=12):
    rng = np.random.default_rng(seed)
    masks = [rng.random((size, size)) < rng.uniform(0, 0.3) for _ in range(n)]
    masks[0][:] = False  # a nominal image
    masks[1][0, 0] = True
    dtype = np.float16 if levels else np.float32
    # Few levels: many ties inside and across the classes; float32 noise: almost none.
    maps = [(rng.integers(0, levels, (size, size)) / levels + 0.2 * y if levels else rng.random((size, size)) + 0.2 * y)
            .astype(dtype) for y in masks]
    return maps, masks


def test_hand_worked():
    # scores 0.9 (anomalous), 0.8 (nominal), 0.8 (anomalous), 0.1 (nominal); P = 2.
    # t=0.9: TP 1 FP 0 -> F1 2/3; t=0.8: TP 2 FP 1 -> 4/5; t=0.1: TP 2 FP 2 -> 2/3.
    maps = [np.array([[0.9, 0.8], [0.8, 0.1]], dtype=np.float32)]
    masks = [np.array([[True, False], [True, False]])]
    assert pixel_f1_max(maps, masks) == pytest.approx(0.8, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [0, 3, 17, 255])
def test_matches_sklearns_precision_recall_curve(seed, levels):
    maps, masks = random_maps(seed, levels)
    assert pixel_f1_max(maps, masks) == pytest.approx(sklearn_f1_max(maps, masks), abs=1e-12)


def test_resamples_are_the_f1_max_of_the_resampled_images():
    maps, masks = random_maps(7, 17)
    labels = np.array([int(y.any()) for y in masks])
    test_set = bootstrap.TestSet(np.arange(len(maps), dtype=np.float32), labels, maps, masks)
    weights = bootstrap.stratified_weights(labels, 5, seed=3)
    resampled = f1_max_resamples(test_set, np.vstack([bootstrap.full_weights(labels), weights]))
    assert resampled[0] == pytest.approx(pixel_f1_max(maps, masks), abs=1e-12)
    for b, w in enumerate(weights, start=1):
        chosen = np.repeat(np.arange(len(maps)), w.astype(int))
        assert resampled[b] == pytest.approx(sklearn_f1_max([maps[i] for i in chosen], [masks[i] for i in chosen]), abs=1e-12)


def test_no_anomalous_pixel_is_an_error():
    with pytest.raises(ValueError, match="needs anomalous pixels"):
        pixel_f1_max([np.zeros((2, 2), np.float32)], [np.zeros((2, 2), bool)])
