"""The sanity checks against independent computations: sklearn/scipy, hand-worked SSIM, analytic
deletion curves, and toy methods whose maps do or do not depend on their weights or the image."""
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from xadbench import grid, run_folder, runner, sanity
from xadbench.method import Method
from xadbench.metrics.registry import list_metrics
from xadbench.methods.centre import Centre, centre_map
from xadbench.methods.pixelstats import PixelStats
from xadbench.testing import toy_split
from xadbench.types import Prediction, Sample, TrainData, stack_images


def _test_set(n=12, size=16, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        mask = np.zeros((size, size), bool)
        if i % 2:
            top, left = rng.integers(0, size - 4, 2)
            mask[top:top + 4, left:left + 4] = True
        samples.append(Sample(torch.rand(3, size, size), int(i % 2), torch.from_numpy(mask)))
    return samples


# ---- input dependence


def test_mean_map_metric_is_the_pooled_auc_of_the_mean_map_by_hand():
    test = _test_set()
    maps = np.random.default_rng(1).random((len(test), 16, 16)).astype(np.float32)
    metrics = sanity.mean_map_metrics(Prediction(np.zeros(len(test), np.float32), maps), test, runner.evaluate)
    mean = maps.mean(0)
    truth = np.concatenate([s.mask.numpy().ravel() for s in test])
    assert metrics["pixel_auc_mean_map"] == pytest.approx(roc_auc_score(truth, np.tile(mean.ravel(), len(test))), abs=1e-12)
    assert "image_auc_mean_map" not in metrics


def test_a_constant_map_scores_its_own_mean_map_exactly():
    test = _test_set()
    constant = np.broadcast_to(np.random.default_rng(2).random((16, 16)).astype(np.float32), (len(test), 16, 16))
    prediction = Prediction(np.zeros(len(test), np.float32), constant)
    metrics = sanity.mean_map_metrics(prediction, test, runner.evaluate)
    truth = np.concatenate([s.mask.numpy().ravel() for s in test])
    by_hand = roc_auc_score(truth, np.asarray(constant).ravel())
    assert metrics["pixel_auc_mean_map"] == pytest.approx(by_hand, abs=1e-12)
    assert runner.evaluate(prediction, test)["pixel_auc"] == pytest.approx(by_hand, abs=1e-12)


def test_a_map_that_ignores_the_image_is_flagged_and_a_localising_one_is_not():
    _, test = toy_split()
    n = len(test)
    masks = np.stack([s.mask.numpy() for s in test]).astype(np.float32)
    # Where the toy's stains are most often: a centre prior that ignores the image.
    prior = np.broadcast_to(masks.mean(0), masks.shape)
    localising = masks + 0.05 * np.random.default_rng(0).random(masks.shape, dtype=np.float32)
    verdict = {}
    for name, maps in (("prior", prior), ("localising", localising)):
        prediction = Prediction(np.zeros(n, np.float32), maps)
        metrics = {**runner.evaluate(prediction, test), **sanity.mean_map_metrics(prediction, test, runner.evaluate)}
        verdict[name] = sanity.not_above_mean_map(metrics["pixel_auc"], metrics["pixel_auc_mean_map"])
    assert verdict == {"prior": True, "localising": False}


# ---- model randomisation


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 5, (9, 9)).astype(float)
    b = a + rng.normal(0, 2, a.shape)
    assert sanity.spearman(a, b) == pytest.approx(spearmanr(a.ravel(), b.ravel()).statistic, abs=1e-12)
    assert sanity.spearman(a, -a) == pytest.approx(-1.0)
    assert math.isnan(sanity.spearman(np.ones((3, 3)), a[:3, :3]))


def test_ssim_of_constant_maps_and_of_an_inverted_map_by_hand():
    # Constant maps scale to 0 (flat), so SSIM of two flat maps is exactly 1.
    assert sanity.ssim(np.full((1, 12, 12), 3.0), np.full((1, 12, 12), 7.0))[0] == pytest.approx(1.0)
    # An 11×11 map has one window position: eq. 13 with Gaussian-weighted statistics by hand.
    rng = np.random.default_rng(4)
    x = rng.random((11, 11))
    x = (x - x.min()) / (x.max() - x.min())
    y = 1 - x  # already in [0, 1], so the scaling leaves it
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = 0.01**2, 0.03**2
    by_hand = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert sanity.ssim(x[None], y[None])[0] == pytest.approx(by_hand, abs=1e-12)
    assert sanity.ssim(x[None], x[None] * 5 + 2)[0] == pytest.approx(1.0)


class ToyNetMethod(Method):
    """A conv net scores the image; the map is either the net's own output (depends on the weights)
    or the image's brightness (depends on the image only)."""

    def __init__(self, map_from: str = "net"):
        self.map_from = map_from

    def fit(self, train, on_epoch=None):
        torch.manual_seed(0)
        self.net_ = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 1, 3, padding=1)).eval()
        with torch.no_grad():  # a "trained" batch norm, unlike a fresh one
            self.net_[1].weight.fill_(2.0)
            self.net_[1].running_mean.fill_(0.3)
        return self

    def predict(self, images):
        with torch.no_grad():
            out = self.net_(images)[:, 0]
        amap = out.abs() if self.map_from == "net" else images.mean(1)
        return Prediction(out.flatten(1).mean(1).numpy().astype(np.float32), amap.numpy().astype(np.float32))

    def randomised(self, cascade_step):
        return sanity.randomised_copy(self, "net_", cascade_step)


@pytest.mark.parametrize("map_from, high", [("image", True), ("net", False)])
def test_randomisation_correlation_is_one_for_weight_independent_maps_and_low_otherwise(map_from, high):
    test = _test_set(n=8, size=32)  # noise images: no structure a random net could share
    method = ToyNetMethod(map_from).fit(None)
    images = stack_images(test)
    maps = method.predict(images).anomaly_map
    metrics = sanity.randomisation_metrics(method, images, maps, test, lambda m: m, runner.evaluate)
    for step in ("top", "all"):
        rho, index = metrics[f"randomised_spearman_{step}"], metrics[f"randomised_ssim_{step}"]
        if high:
            assert rho == pytest.approx(1.0) and index == pytest.approx(1.0)
        else:
            assert abs(rho) < 0.5 and index < 0.5
    assert 0 <= metrics["pixel_auc_randomised"] <= 1


def test_randomise_layers_goes_top_first_and_leaves_the_original_alone():
    method = ToyNetMethod().fit(None)
    before = {k: v.clone() for k, v in method.net_.state_dict().items()}
    top = method.randomised(1)
    changed = [k for k, v in top.net_.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["3.weight", "3.bias"]  # the last conv only
    whole = method.randomised(None)
    assert all(not torch.equal(whole.net_.state_dict()[k], before[k]) for k in ("0.weight", "1.weight", "3.weight"))
    assert torch.equal(whole.net_[1].running_mean, torch.zeros(8))  # batch-norm statistics reset too
    assert all(torch.equal(v, before[k]) for k, v in method.net_.state_dict().items())
    assert Centre().fit(TrainData([Sample(torch.zeros(3, 4, 4), 0)])).randomised(None) is None


# ---- deletion and insertion


class RegionSum(Method):
    """Score = sum of the pixels of a fixed region (channel 0); map = that region's indicator."""

    def __init__(self, region=None):
        self.region = region

    def fit(self, train, on_epoch=None):
        return self

    def predict(self, images):
        region = torch.as_tensor(self.region)
        score = (images[:, 0] * region).flatten(1).sum(1)
        return Prediction(score.numpy().astype(np.float32),
                          np.broadcast_to(self.region.astype(np.float32), images[:, 0].shape).copy())


def test_deletion_and_insertion_of_a_region_sum_follow_the_analytic_curves():
    h, w = 40, 50  # N = 2000 pixels, region k = 200, so p = 0.1 sits on the fraction grid
    region = np.zeros((h, w), bool)
    region[5:15, 10:30] = True
    method = RegionSum(region)
    reference = torch.full((3, h, w), 0.25)  # its score r = 0.25 k; curves are scaled by s(0) − r = 0.75 k
    images = reference.repeat(3, 1, 1, 1)
    images[:, :, torch.from_numpy(region)] = 1.0  # ones in the region, the reference elsewhere
    maps = method.predict(images).anomaly_map
    labels = np.array([1, 1, 1])
    metrics = sanity.faithfulness_metrics(method.score_images, images, labels, maps, reference)
    p = region.mean()
    # Deletion by the map: s(f) = k − min(fN, k), area ∫₀^½ max(1 − f/p, 0) df / ½ = p.
    assert metrics["deletion_area"] == pytest.approx(p, abs=1e-9)
    # Insertion: s(f) = min(fN, k), area (p/2 + ½ − p) / ½ = 1 − p.
    assert metrics["insertion_area"] == pytest.approx(1 - p, abs=1e-9)
    # A random order removes a fraction f of the region in expectation: area ∫₀^½ (1 − f) df / ½ = 0.75.
    assert metrics["deletion_area_random"] == pytest.approx(0.75, abs=0.02)
    assert metrics["faithfulness_gain"] == pytest.approx(metrics["deletion_area_random"] - p, abs=1e-12)


def test_deletion_curve_points_by_hand_and_a_score_that_ignores_pixels_is_nan():
    region = np.zeros((10, 10), bool)
    region[0, :5] = True  # p = 0.05
    method = RegionSum(region)
    images = torch.zeros(1, 3, 10, 10)
    images[:, 0, 0, :5] = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])
    maps = images[:, 0].numpy()  # ranks the region's pixels by value: 5, 4, 3, ...
    fractions = (0.0, 0.01, 0.02, 0.05, 0.5)
    metrics = sanity.faithfulness_metrics(method.score_images, images, np.array([1]), maps,
                                          torch.zeros(3, 10, 10), fractions)
    curve = np.array([15.0, 10.0, 6.0, 0.0, 0.0])  # delete 0, 1, 2, 5, 50 pixels
    heights = (curve[1:] + curve[:-1]) / 2 * np.diff(fractions)
    assert metrics["deletion_area"] == pytest.approx(heights.sum() / (0.5 * 15.0), abs=1e-9)
    centre = Centre().fit(TrainData([Sample(torch.zeros(3, 10, 10), 0)]))
    constant = sanity.faithfulness_metrics(centre.score_images, images, np.array([1]),
                                           centre.predict(images).anomaly_map, torch.zeros(3, 10, 10))
    assert all(math.isnan(v) for v in constant.values())


# ---- the centre reference


def test_centre_map_is_the_gaussian_of_a_quarter_side():
    amap = centre_map(9, 9, 0.25)
    sigma = 0.25 * 9
    assert amap[4, 4] == 1.0
    assert amap[0, 4] == pytest.approx(math.exp(-16 / (2 * sigma**2)))
    assert amap[0, 0] == pytest.approx(math.exp(-32 / (2 * sigma**2)))


@pytest.mark.slow
def test_run_job_with_sanity_adds_each_check_as_one_named_metric_row():
    [spec] = runner.identify([runner.JobSpec(dataset="synthetic", class_name="fabric", method="pixelstats", sanity=True)])
    result = runner.run_job(spec)
    metrics = {r["metric"]: r["value"] for r in result.rows}
    assert len(metrics) == len(result.rows)
    assert {"pixel_auc_mean_map", "deletion_area", "deletion_area_random", "insertion_area",
            "faithfulness_gain"} <= set(metrics)
    randomised = [m for m in metrics if m.startswith("randomised") or m == "pixel_auc_randomised"]
    assert len(randomised) == 5 and all(math.isnan(metrics[m]) for m in randomised)  # not applicable: no network
    assert all(r["sanity_s"] > 0 for r in result.rows)
    plain = runner.run_job(runner.JobSpec(dataset="synthetic", class_name="fabric", method="pixelstats"))
    assert spec.job_id == plain.rows[0]["job_id"]
    assert {r["metric"] for r in plain.rows} == set(list_metrics(headline=True))


def test_a_constant_map_gets_no_own_mean_map_check():
    """`centre` declares `constant_map`: its map is its own mean map, so the check would always
    fail it (the tables flagged every centre cell) for a property of the reference, not a finding."""
    assert Centre.constant_map and not PixelStats.constant_map
    [spec] = runner.identify([runner.JobSpec(dataset="synthetic", class_name="fabric", method="centre", sanity=True)])
    metrics = {r["metric"] for r in runner.run_job(spec).rows}
    assert {"pixel_auc", "deletion_area"} <= metrics and not any(m.endswith("_mean_map") for m in metrics)


def test_tables_put_references_first_and_flag_a_method_not_above_its_mean_map(tmp_path):
    from xadbench.reports.table_formats import FLAG_COLUMN, to_csv, to_latex
    from xadbench.reports.tables import report_tables

    values = {("fcdd", "pixel_auc"): 0.90, ("fcdd", "pixel_auc_mean_map"): 0.60,
              ("grad", "pixel_auc"): 0.81, ("grad", "pixel_auc_mean_map"): 0.80,
              ("centre", "pixel_auc"): 0.70, ("centre", "pixel_auc_mean_map"): 0.70}
    rows = [{"job_id": method, "dataset": "synthetic", "class": "wood", "method": method, "seed": 0, "preset": "cpu",
             "protocol": "unsupervised", "blur": "gaussian", "metric": metric, "value": value, "oe": "",
             "oe_limit": "", "oe_exclude": "", "k": "", "weights": "none", "params": "{}"}
            for (method, metric), value in values.items()]
    store = run_folder.results_store(tmp_path).open()
    for method in ("fcdd", "grad", "centre"):
        store.add_job(method, [r for r in rows if r["job_id"] == method], checkpoint=False)
    table = next(t for t in report_tables(tmp_path) if t.key["metric"] == "pixel_auc")
    assert list(table.mean.columns) == ["centre", "FCDD", "Grad"]
    assert table.flags == {"wood": ["centre", "Grad"]}
    assert table.marks == {}  # no predictions, so no bootstrap and nothing marked best
    assert "centre,Grad" in to_csv(table) and FLAG_COLUMN in to_csv(table)
    latex = to_latex(table)
    assert "0.810{\\rlap{$^\\dagger$}}" in latex and "0.900{\\rlap" not in latex and "References" in latex


def test_evaluate_refuses_predictions_without_a_saved_spec_before_scoring_anything(tmp_path):
    from xadbench.errors import XadError
    from xadbench.rescore import rescore_run

    [spec] = runner.identify([runner.JobSpec(dataset="synthetic", class_name="fabric", method="centre")])
    grid.run_grid([spec], tmp_path)
    path = tmp_path / "predictions" / f"{spec.job_id}.npz"
    old = {k: v for k, v in run_folder.load_predictions(path).items() if k != "spec"}
    run_folder.save_predictions(path, old)
    with pytest.raises(XadError, match=f"{spec.job_id}.npz: predictions without the job's spec"):
        rescore_run(tmp_path)


@pytest.mark.slow
def test_a_results_csv_with_not_applicable_rows_is_imported_as_nan(tmp_path):
    spec = runner.JobSpec(dataset="synthetic", class_name="fabric", method="centre", sanity=True)
    grid.run_grid([spec], tmp_path / "run")
    (tmp_path / "copy").mkdir()  # a folder with only the CSV (e.g. from a release before the store)
    (tmp_path / "copy" / "results.csv").write_text((tmp_path / "run" / "results.csv").read_text())
    imported = run_folder.read_results(tmp_path / "copy").set_index("metric")["value"]
    assert math.isnan(imported["deletion_area"]) and imported["pixel_auc"] == pytest.approx(
        run_folder.read_results(tmp_path / "run").set_index("metric")["value"]["pixel_auc"])
