"""The anomalib adapter: PatchCore and PaDiM against brute-force computations on the same VGG11-BN
features (PatchCore: Roth et al. 2022, nearest-neighbour patch distances; PaDiM: Defard et al.
2021, per-position Gaussians and Mahalanobis distances), the run → report path with the
backbone recorded, and the one-line error when the extra is missing."""
import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from xadbench import backbones
from xadbench.cli import app
from xadbench.errors import MissingExtraError, PluginError, XadError
from xadbench import heatmaps
from xadbench.registry import METHODS_GROUP, Registry, methods
from xadbench.testing import toy_split
from xadbench.types import TrainData, stack_images

needs_anomalib = pytest.mark.skipif(importlib.util.find_spec("anomalib") is None,
                                    reason="needs the extra: pip install 'xadbench[anomalib]' (make test installs it)")
#: anomalib's anomaly-map blur for both models: Gaussian σ = 4 px, 33 taps, reflect padding
#: (torch's "reflect" is scipy's "mirror").
BLUR_SIGMA = 4.0


@pytest.fixture(scope="module")
def vgg_weights(tmp_path_factory):
    """A random VGG11-BN features state dict saved as a weights file, and the loaded features."""
    torch.manual_seed(123)
    features = backbones.vgg_features()
    for module in features:
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial running statistics
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path_factory.mktemp("weights") / "vgg.pt"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path, features.eval()


@pytest.fixture(scope="module")
def toy():
    train, test = toy_split(seed=3, n_train=16, n_test=8)
    return stack_images(train.nominal), train, stack_images(test)


def embed(features, images, layers, pool):
    """Concatenated features of `layers` ("features.<i>"), optionally 3×3-averaged, the deeper
    ones bilinearly upsampled to the first's size, from a plain forward pass of the VGG prefix."""
    mean = torch.tensor(backbones.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(backbones.IMAGENET_STD).view(1, 3, 1, 1)
    x = (images - mean) / std
    maps = []
    with torch.no_grad():
        for name in layers:
            f = features[: int(name.split(".")[1]) + 1](x)
            maps.append(F.avg_pool2d(f, 3, 1, 1) if pool else f)
    size = maps[0].shape[-2:]
    return torch.cat([maps[0]] + [F.interpolate(m, size=size, mode="bilinear") for m in maps[1:]], 1).double()


def blur(maps):
    return np.stack([ndimage.gaussian_filter(m, BLUR_SIGMA, mode="mirror", truncate=4.0) for m in maps])


@pytest.mark.slow
@needs_anomalib
def test_patchcore_full_memory_bank_equals_brute_force_nearest_neighbours(vgg_weights, toy):
    path, features = vgg_weights
    train_images, train, test_images = toy
    from xadbench.methods.anomalib_models import PatchCore

    layers = ("features.6", "features.13")  # 16×16 and 8×8 at 32 px
    train = TrainData(train.nominal[:8])  # a full coreset costs one greedy step per patch
    method = PatchCore(layers=layers, coreset_ratio=1.0, num_neighbors=1, weights=str(path), device="cpu").fit(train)
    prediction = method.predict(test_images)

    bank = embed(features, train_images[:8], layers, pool=True)
    query = embed(features, test_images, layers, pool=True)
    c, h, w = query.shape[1:]
    distances = torch.cdist(query.permute(0, 2, 3, 1).reshape(-1, c), bank.permute(0, 2, 3, 1).reshape(-1, c))
    patch = distances.min(1).values.reshape(len(test_images), h, w).numpy()
    np.testing.assert_allclose(prediction.score, patch.max(axis=(1, 2)), rtol=1e-4)
    upsampled = patch.repeat(32 // h, axis=1).repeat(32 // w, axis=2)  # nearest upsampling
    expected = blur(upsampled)
    np.testing.assert_allclose(prediction.anomaly_map, expected, rtol=1e-3, atol=1e-3 * expected.max())
    assert method.weights_used_.startswith("file:vgg.pt sha256:")


@pytest.mark.slow
@needs_anomalib
def test_patchcore_coreset_is_a_subset_of_the_training_patches(vgg_weights, toy):
    path, features = vgg_weights
    train_images, train, _ = toy
    from xadbench.methods.anomalib_models import PatchCore

    layers = ("features.6", "features.13")
    method = PatchCore(layers=layers, coreset_ratio=0.05, weights=str(path), device="cpu").fit(train)
    bank = embed(features, train_images, layers, pool=True)
    patches = bank.permute(0, 2, 3, 1).reshape(-1, bank.shape[1])
    coreset = method.model_.memory_bank.double()
    assert len(coreset) == int(len(patches) * 0.05)
    nearest = torch.cdist(coreset, patches).min(1).values
    assert nearest.max() < 1e-3 * patches.norm(dim=1).mean()


def farthest_first(points: np.ndarray, first: int, size: int) -> list[int]:
    """Greedy k-center selection by brute force in float64: each next point is the one whose
    distance to its nearest chosen point is largest."""
    chosen = [first]
    for _ in range(size - 1):
        nearest = np.linalg.norm(points[:, None] - points[chosen][None], axis=2).min(axis=1)
        chosen.append(int(nearest.argmax()))
    return chosen


@needs_anomalib
def test_k_center_greedy_equals_brute_force_and_anomalibs_selection():
    from anomalib.models.components import KCenterGreedy

    from xadbench.methods.anomalib_models import k_center_greedy

    points = torch.from_numpy(np.random.default_rng(7).standard_normal((400, 6)) * [1, 1, 1, 2, 3, 5])
    torch.manual_seed(11)
    chosen = k_center_greedy(points, 40).tolist()
    torch.manual_seed(11)
    first = int(torch.randint(high=400, size=(1,)))
    assert chosen == farthest_first(points.numpy(), first, 40)
    torch.manual_seed(11)  # anomalib's own loop (a 3-D embedding skips its random projection)
    assert chosen == KCenterGreedy(points[:, :, None], sampling_ratio=0.1).select_coreset_idxs()


@pytest.mark.slow
@needs_anomalib
@pytest.mark.parametrize("name", ["patchcore", "padim"])
def test_checkpoint_round_trip_predicts_the_same(tmp_path, vgg_weights, toy, name):
    from xadbench import run_folder

    path, _ = vgg_weights
    _, train, test_images = toy
    params = {"layers": ("features.6", "features.13"), "weights": str(path), "device": "cpu"}
    params.update(coreset_ratio=0.05) if name == "patchcore" else params.update(n_features=16)
    method = methods.get(name)(**params).fit(train)
    run_folder.save_checkpoint(tmp_path / "job.pt", {"method": name, "state": method.checkpoint()})
    loaded = run_folder.load_checkpoint(tmp_path / "job.pt")  # torch.load(weights_only=True)
    before, after = method.predict(test_images), loaded.predict(test_images)
    np.testing.assert_array_equal(after.score, before.score)
    np.testing.assert_array_equal(after.anomaly_map, before.anomaly_map)
    assert loaded.weights_used_ == method.weights_used_ and loaded.get_params() == method.get_params()


@needs_anomalib
def test_padim_equals_per_position_gaussian_mahalanobis(vgg_weights, toy):
    path, features = vgg_weights
    train_images, train, test_images = toy
    from xadbench.methods.anomalib_models import PaDiM

    layers = ("features.2",)  # 64 channels at full resolution
    method = PaDiM(layers=layers, n_features=8, weights=str(path), device="cpu").fit(train)
    prediction = method.predict(test_images)

    channels = method.model_.idx  # the random channel subset anomalib drew
    assert len(set(channels.tolist())) == 8 and channels.max() < 64
    train_emb = embed(features, train_images, layers, pool=False)[:, channels].numpy()
    test_emb = embed(features, test_images, layers, pool=False)[:, channels].numpy()
    n, d, h, w = train_emb.shape
    vectors = train_emb.reshape(n, d, h * w).transpose(2, 0, 1)  # (positions, n, d)
    mean = vectors.mean(axis=1, keepdims=True)
    centred = vectors - mean
    covariance = centred.transpose(0, 2, 1) @ centred / (n - 1) + 0.01 * np.eye(d)  # PaDiM: Σ + εI
    delta = test_emb.reshape(len(test_emb), d, h * w).transpose(2, 0, 1) - mean  # (positions, m, d)
    mahalanobis = np.sqrt(np.einsum("pmd,pde,pme->pm", delta, np.linalg.inv(covariance), delta))
    expected = blur(mahalanobis.T.reshape(-1, h, w))
    np.testing.assert_allclose(prediction.anomaly_map, expected, rtol=1e-3, atol=1e-3 * expected.max())
    np.testing.assert_allclose(prediction.score, expected.max(axis=(1, 2)), rtol=1e-3)


@needs_anomalib
def test_padim_fits_after_torch_threads_were_set(vgg_weights, toy):
    """The executors call torch.set_num_threads; after that, oneMKL's batched LU of the
    preset's 200×200 covariances fails unless PaDiM inverts them on one thread."""
    path, _ = vgg_weights
    _, train, test_images = toy
    from xadbench.methods.anomalib_models import PaDiM

    threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    method = PaDiM(n_features=200, weights=str(path), device="cpu").fit(train)
    assert torch.get_num_threads() == threads
    covariance_inverse = method.model_.gaussian.inv_covariance
    assert covariance_inverse.shape[1:] == (200, 200) and torch.isfinite(covariance_inverse).all()
    assert np.isfinite(method.predict(test_images).score).all()


@needs_anomalib
def test_bad_settings_are_one_line_errors_before_fitting(toy):
    _, train, _ = toy
    from xadbench.methods.anomalib_models import PaDiM, PatchCore

    cases = [(PatchCore(backbone="resnet18", pretrained=False), "unknown backbone 'resnet18'"),
             (PatchCore(layers=("features.99",), pretrained=False), "features.99"),
             (PatchCore(layers=("layer2",), pretrained=False), "layer2"),
             (PatchCore(coreset_ratio=0.0, pretrained=False), "coreset_ratio"),
             (PaDiM(n_features=5000, pretrained=False), "n_features")]
    for method, message in cases:
        with pytest.raises(XadError, match=message) as info:
            method.fit(train)
        assert "\n" not in str(info.value)


def write_toy_tree(root):
    """The toy split as a folder-per-class tree of 32 px PNGs: class "good" is nominal."""
    train, test = toy_split(seed=5, n_train=24, n_test=16)
    for split, samples in (("train", train.nominal), ("test", test)):
        for i, sample in enumerate(samples):
            folder = root / split / ("stain" if sample.label else "good")
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (sample.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")


@pytest.mark.slow
@needs_anomalib
def test_run_records_backbone_and_weights_and_writes_figures(tmp_path, vgg_weights):
    path, _ = vgg_weights
    write_toy_tree(tmp_path / "toy")
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["run", "--methods", "patchcore,padim", "--dataset", str(tmp_path / "toy"),
                                      "--classes", "good", "--weights", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert set(table["method"]) == {"patchcore", "padim"}
    assert table["weights"].str.startswith("file:vgg.pt sha256:").all()
    params = [json.loads(p) for p in table["params"]]
    assert all(p["backbone"] == "vgg11_bn" and p["layers"] == ["features.13", "features.20"] for p in params)
    image_auc = table[table["metric"] == "image_auc"].set_index("method")["value"]
    assert (image_auc > 0.8).all(), image_auc  # random VGG features still see the stains
    assert list((out / "figures").glob("*.png"))
    figures = CliRunner().invoke(app, ["figures", str(out)])
    assert figures.exit_code == 0, figures.output

    # Each job saved its fitted model, so `evaluate` rescores from the checkpoints (the sanity
    # checks refit nothing) and reproduces every row, the randomisation checks included.
    assert len(list((out / "checkpoints").glob("*.pt"))) == 2
    evaluated = CliRunner().invoke(app, ["evaluate", str(out), "--no-report"])
    assert evaluated.exit_code == 0 and "no checkpoint" not in evaluated.output, evaluated.output
    again = pd.read_csv(out / "results.csv")
    key = ["method", "blur", "metric"]
    merged = table.merge(again, on=key, suffixes=("", "_again"))
    assert len(merged) == len(table) and "randomised_spearman_all" in set(table["metric"])
    np.testing.assert_allclose(merged["value_again"], merged["value"], rtol=1e-6, equal_nan=True)


def test_without_the_extra_the_plugin_fails_in_one_line_naming_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "anomalib", None)  # find_spec("anomalib") is None now
    monkeypatch.delitem(sys.modules, "xadbench.methods.anomalib_models", raising=False)
    registry = Registry(METHODS_GROUP, "method")
    for name in ("patchcore", "padim"):
        with pytest.raises(PluginError, match=r"pip install 'xadbench\[anomalib\]'") as info:
            registry.get(name)
        assert isinstance(info.value.__cause__, MissingExtraError) and "\n" not in str(info.value)
    assert registry.get("pixelstats").supervision == "none"  # the others still load

    monkeypatch.setattr(methods, "_loaded", {})
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats,patchcore", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'xadbench[anomalib]'" in lines[0]
    assert not (tmp_path / "run").exists()  # nothing ran, nothing written
    listed = CliRunner().invoke(app, ["methods", "list"])
    assert listed.exit_code == 0 and "pixelstats" in listed.output and "xadbench[anomalib]" in listed.output


@needs_anomalib
def test_randomised_backbone_changes_the_maps_and_leaves_the_method_alone(vgg_weights, toy):
    path, _ = vgg_weights
    _, train, test_images = toy
    from xadbench.methods.anomalib_models import PaDiM

    method = PaDiM(layers=("features.6", "features.13"), n_features=16, weights=str(path), device="cpu").fit(train)
    before = method.predict(test_images)
    top = method.randomised(1)
    convs = [m for m in top.model_.feature_extractor.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4  # the backbone ends at features.13, so the top layer is one that counts
    after = top.predict(test_images)
    np.testing.assert_array_equal(method.predict(test_images).anomaly_map, before.anomaly_map)
    assert not np.allclose(after.anomaly_map, before.anomaly_map, rtol=1e-3)


@needs_anomalib
def test_readme_example_wraps_anomalibs_dfm_as_a_method(vgg_weights, toy):
    """The README's block on wrapping another anomalib model runs as written and detects the toy
    stains on a random VGG; its score is DFM's feature reconstruction error, checked here
    against a PCA computed with numpy on the same pooled features; its maps get the shared blur
    (the post-processor the runner builds from the class's declared flags blurs them)."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```python\n# wrapping another anomalib model: DFM\n")[1].split("```")[0]
    namespace: dict = {}
    exec(block, namespace)
    path, features = vgg_weights
    train_images, train, test_images = toy
    method = namespace["DFM"](layers=("features.13",), n_comps=0.9, weights=str(path), device="cpu").fit(train)
    prediction = method.predict(test_images)

    pooled = [F.avg_pool2d(embed(features, x, ("features.13",), pool=False), 2).flatten(1).numpy()
              for x in (train_images, test_images)]
    mean = pooled[0].mean(axis=0)
    _, singular, vt = np.linalg.svd(pooled[0] - mean, full_matrices=False)
    explained = np.cumsum(singular**2) / np.sum(singular**2)
    # anomalib keeps the components before the first whose cumulative share reaches n_comps
    basis = vt[: int(np.searchsorted(explained, 0.9))]
    residual = (pooled[1] - mean) - (pooled[1] - mean) @ basis.T @ basis
    np.testing.assert_allclose(prediction.score, (residual**2).sum(axis=1), rtol=2e-3)
    assert prediction.anomaly_map.shape == (len(test_images), *test_images.shape[-2:])
    process = heatmaps.PostProcessor(size=17, sigma=4.0, maps_smoothed=method.maps_smoothed)  # as run_job builds it
    blurred = process(prediction.anomaly_map, policy="gaussian")
    np.testing.assert_array_equal(blurred, heatmaps.blur(prediction.anomaly_map, 17, 4.0))
    assert not np.allclose(blurred, prediction.anomaly_map)
