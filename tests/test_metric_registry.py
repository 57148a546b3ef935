"""The metric registry: declarations, run-time scoring, and point values equal to the
bootstrap's full-test-set values (the same arrays give the same number)."""
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from xadbench.metrics import registry
from xadbench.metrics import bootstrap


def random_test_set(seed=0, n=12, size=16):
    rng = np.random.default_rng(seed)
    labels = np.array([0] * (n // 2) + [1] * (n - n // 2))
    masks = [np.zeros((size, size), bool) if y == 0 else rng.random((size, size)) < 0.15 for y in labels]
    # float16 maps with few levels: many ties, as the saved maps have.
    maps = [(rng.integers(0, 40, (size, size)) / 40 + 0.3 * m).astype(np.float16) for m in masks]
    scores = rng.random(n).astype(np.float32) + 0.3 * labels
    return scores, labels, maps, masks


def test_headline_metrics_are_declared_once_with_functions():
    assert registry.list_metrics(headline=True)[:4] == ("image_auc", "pixel_auc", "per_image_pixel_auc", "aupro")
    for name in registry.list_metrics(headline=True):
        metric = registry.get_metric(name)
        assert metric.point is not None and metric.resample is not None
    with pytest.raises(ValueError, match="declared twice"):
        registry.register_metric(registry.get_metric("image_auc"))
    with pytest.raises(KeyError, match="unknown metric 'nope'"):
        registry.get_metric("nope")


def test_score_gives_every_headline_metric_and_image_ones_without_masks():
    scores, labels, maps, masks = random_test_set()
    values = registry.score(scores, labels, maps, masks)
    assert set(values) == set(registry.list_metrics(headline=True))
    assert values["image_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    pooled = roc_auc_score(np.concatenate([y.ravel() for y in masks]),
                           np.concatenate([m.ravel() for m in maps]).astype(np.float64))
    assert values["pixel_auc"] == pytest.approx(pooled, abs=1e-12)
    assert set(registry.score(scores, labels)) == set(registry.list_metrics(headline=True, needs_masks=False))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_value_equals_the_bootstraps_full_test_set_value(seed):
    """results.csv's value and the interval's point value come from one computation's arrays:
    they agree to the last bit, not just to the printed digit."""
    scores, labels, maps, masks = random_test_set(seed)
    test_set = bootstrap.TestSet(scores, labels, maps, masks)
    points = registry.score(scores, labels, maps, masks)
    for name, value in points.items():
        resampled = registry.get_metric(name).resample(test_set, bootstrap.full_weights(labels))[0]
        assert registry.get_metric(name).format(resampled) == registry.get_metric(name).format(value), name
        assert resampled == pytest.approx(value, abs=1e-12), name


def test_a_value_outside_the_declared_range_is_refused(monkeypatch):
    scores, labels, _, _ = random_test_set()
    broken = registry.Metric("image_auc", "x", "image", True, (0.0, 1.0), True, lambda s, y: 1.5)
    monkeypatch.setitem(registry._METRICS, "image_auc", broken)
    with pytest.raises(ValueError, match="outside its range"):
        registry.score(scores, labels)


def test_the_readme_metrics_section_is_the_registrys():
    """The README's Metrics table is `metrics_markdown()` (regenerate it after declaring a metric)."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    start, end = registry.README_MARKERS
    assert start in readme and end in readme
    shown = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert shown == registry.metrics_markdown(), (
        "README's Metrics table is stale; regenerate it with: python -c 'from xadbench.metrics.registry "
        "import metrics_markdown; print(metrics_markdown())'")
