import hashlib
import math
import warnings

import numpy as np
import pytest
import torch

import xadbench.backbones as backbones
from xadbench.backbones import FROZEN_LAYERS, Frozen, freeze, vgg11_bn_features, vgg_features
from xadbench.errors import NotFittedError, XadError
from xadbench.methods.fcdd import FCDD, fcdd_loss, fcdd_pixel_loss, neg_log_one_minus_exp
from xadbench.methods.fcdd_net import (
    SMALL_VGG_LAYOUT,
    build_net,
    cifar10_net,
    fmnist_net,
    pseudo_huber,
    receptive_upsample,
    vgg_net,
)
from xadbench.profiles import PROFILES
from xadbench.receptive_field import receptive_field
from xadbench.registry import methods
from xadbench.types import Prediction, Sample, TrainData

# ---------------------------------------------------------------------------------------------
# Algorithm 1


def brute_force_upsample(heatmap: np.ndarray, centre: float, jump: int, extent: int, sigma: float,
                         size: tuple[int, int]) -> np.ndarray:
    """Algorithm 1 as printed: A' = 0; for every low-res pixel a: c = centre of a's receptive
    field; A' += a · G(c, σ) over the pixels of the field (the kernel is the field's size)."""
    n, u_count, v_count = heatmap.shape
    height, width = size
    out = np.zeros((n, height, width))
    half = (extent - 1) / 2
    ys, xs = np.arange(height)[:, None], np.arange(width)[None, :]
    for b in range(n):
        for u in range(u_count):
            for v in range(v_count):
                cy, cx = centre + u * jump, centre + v * jump
                in_field = (np.abs(ys - cy) <= half) & (np.abs(xs - cx) <= half)
                gauss = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
                out[b] += heatmap[b, u, v] * gauss * in_field
    return out


@pytest.mark.parametrize("net,size,sigma", [
    (fmnist_net(1, 8), 28, 1.2),
    (fmnist_net(1, 8), 30, 1.2),  # 30 px: floor pooling leaves the last rows outside every field
    (cifar10_net(3, (8, 8, 8)), 32, 1.2),
    (vgg_net(vgg_features(SMALL_VGG_LAYOUT)), 224, 12.0),
    (vgg_net(vgg_features(SMALL_VGG_LAYOUT)), 128, 8.0),
], ids=["fmnist28", "fmnist30", "cifar32", "vgg224", "vgg128"])
def test_upsampling_is_algorithm_1(net, size, sigma):
    field = receptive_field(net, size)
    heatmap = torch.rand(2, *field.size, generator=torch.Generator().manual_seed(size))
    fast = receptive_upsample(heatmap, field, sigma, (size, size))
    slow = brute_force_upsample(heatmap.double().numpy(), field.centre, field.jump, field.extent, sigma, (size, size))
    assert fast.shape == (2, size, size)
    np.testing.assert_allclose(fast.numpy(), slow, rtol=1e-5, atol=1e-5)


def test_upsampling_centres_each_gaussian_on_its_field():
    field = receptive_field(vgg_net(vgg_features(SMALL_VGG_LAYOUT)), 224)  # centre 3.5, jump 8
    delta = torch.zeros(1, *field.size)
    delta[0, 5, 6] = 1.0
    out = receptive_upsample(delta, field, 8.0, (224, 224))[0]
    cy, cx = 3.5 + 5 * 8, 3.5 + 6 * 8
    # Peak-1 Gaussian (not normalised): the four pixels around (43.5, 51.5) share the maximum,
    # and the map is mirror-symmetric about the centre.
    assert out.max().item() == pytest.approx(math.exp(-0.5 / (2 * 64)), rel=1e-6)
    top, left = int(cy - 30.5), int(cx - 30.5)
    window = out[top : top + 62, left : left + 62]
    assert torch.allclose(window, window.flip(0)) and torch.allclose(window, window.flip(1))
    support = torch.nonzero(out)
    assert support[:, 0].min() == cy - 30.5 and support[:, 0].max() == cy + 30.5
    assert support[:, 1].min() == cx - 30.5 and support[:, 1].max() == cx + 30.5


# ---------------------------------------------------------------------------------------------
# Objectives


def test_pseudo_huber():
    phi = torch.tensor([0.0, 1.0, -2.0, 1e4])
    expected = [0.0, math.sqrt(2) - 1, math.sqrt(5) - 1, math.sqrt(1e8 + 1) - 1]
    np.testing.assert_allclose(pseudo_huber(phi).numpy(), expected, rtol=1e-6)


def test_image_loss_hand_values():
    a = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 2.0)])
    # Both nominal: mean of the scores. Both anomalous: −log(1 − e^{−score}).
    assert fcdd_loss(a, torch.tensor([0.0, 0.0])).item() == pytest.approx(1.25)
    anom = [-math.log(1 - math.exp(-0.5)), -math.log(1 - math.exp(-2.0))]
    assert fcdd_loss(a, torch.tensor([1.0, 1.0])).item() == pytest.approx(sum(anom) / 2, rel=1e-6)
    assert fcdd_loss(a, torch.tensor([1.0, 0.0])).item() == pytest.approx((anom[0] + 2.0) / 2, rel=1e-6)
    # The score is the mean over pixels: a non-constant map.
    b = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    assert fcdd_loss(b, torch.tensor([1.0])).item() == pytest.approx(-math.log(1 - math.exp(-1.5)), rel=1e-6)


def test_pixel_loss_hand_values():
    a = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 2.0], [3.0, 4.0]]])
    y = torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])
    # Image 0: nominal pixels (1 + 3) / 4 = 1, anomalous −log(1 − exp(−(2 + 4) / 4)).
    # Image 1 has no anomalous pixel: mean(A') = 2.5, no anomalous term (eq. 3 would be ∞).
    first = 1.0 - math.log(1 - math.exp(-1.5))
    assert fcdd_pixel_loss(a, y).item() == pytest.approx((first + 2.5) / 2, rel=1e-6)
    assert fcdd_pixel_loss(a[1:], y[1:]).item() == pytest.approx(2.5)
    # A mask of ones is eq. 2's anomalous term on A'.
    ones = torch.ones_like(a)
    assert fcdd_pixel_loss(a, ones).item() == pytest.approx(fcdd_loss(a, torch.ones(2)).item(), rel=1e-6)


def test_losses_stay_finite_for_tiny_and_huge_scores():
    for value in (0.0, 1e-30, 1e-8, 1e-3, 50.0, 1e6):
        phi = torch.full((3, 1, 4, 4), math.sqrt(value), requires_grad=True)
        a = pseudo_huber(phi[:, 0])
        up = a.repeat_interleave(2, 1).repeat_interleave(2, 2)
        masks = torch.zeros(3, 8, 8)
        masks[0] = 1
        masks[1, :4] = 1
        for loss in (fcdd_loss(a, torch.tensor([1.0, 1.0, 0.0])), fcdd_loss(a, torch.ones(3)),
                     fcdd_loss(a, torch.zeros(3)), fcdd_pixel_loss(up, masks), fcdd_pixel_loss(up, torch.ones(3, 8, 8))):
            phi.grad = None
            loss.backward(retain_graph=True)
            assert torch.isfinite(loss) and torch.isfinite(phi.grad).all(), value
    # Tiny x is exact where 1 − exp(−x) would round to 0, and clamped at 1e-6 below that.
    x = torch.tensor([1e-5, 1e-12, 0.0])
    np.testing.assert_allclose(neg_log_one_minus_exp(x).numpy(), [-math.log(-math.expm1(-1e-5)), -math.log(1e-6), -math.log(1e-6)],
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Backbone, freezing, weights


def test_frozen_layers_keep_their_batch_norm_statistics():
    torch.manual_seed(0)
    net = vgg_net(vgg_features(SMALL_VGG_LAYOUT))
    frozen = net.frozen
    assert isinstance(frozen, Frozen) and len(frozen.module) == FROZEN_LAYERS
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    trained_before = {k: v.clone() for k, v in net.trained.state_dict().items()}
    net.train()
    assert not frozen.module.training and net.trained.training
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    x = torch.rand(4, 3, 64, 64) * 3
    with torch.no_grad():
        assert not frozen(x).requires_grad  # no graph through the frozen part
    loss = net(x).pow(2).mean()
    loss.backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in frozen.state_dict().items())
    changed = [k for k, v in net.trained.state_dict().items() if not torch.equal(trained_before[k], v)]
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)
    assert all(p.grad is None for p in frozen.parameters())
    # An input gradient still flows through the frozen part (for gradient attributions).
    x.requires_grad_(True)
    net.eval()(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert freeze(frozen) is frozen


@pytest.fixture
def fake_weights(tmp_path):
    torch.manual_seed(1)
    state = {f"features.{k}": v for k, v in vgg_features().state_dict().items()}
    path = tmp_path / "fake_vgg.pt"
    torch.save(state, path)
    return path, state


def test_weights_from_a_state_dict_file(fake_weights):
    path, state = fake_weights
    features, used = vgg11_bn_features(weights=str(path))
    assert len(features) == 29
    assert used == f"file:fake_vgg.pt sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
    for k, v in features.state_dict().items():
        assert torch.equal(v, state[f"features.{k}"])
    # A full torchvision state dict (classifier included) loads too.
    torch.save({**state, "classifier.0.weight": torch.zeros(2, 2)}, path)
    vgg11_bn_features(weights=str(path))


def _one_line_error(match: str, **kwargs) -> str:
    with pytest.raises(XadError, match=match) as info:
        vgg11_bn_features(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_bad_weights_files_say_what_is_wrong(tmp_path, fake_weights):
    path, state = fake_weights
    missing = tmp_path / "nope.pt"
    assert "--no-pretrained" in _one_line_error("does not exist", weights=str(missing))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a pickle at all")
    assert "garbage.pt" in _one_line_error("cannot be read", weights=str(garbage))
    torch.save([1, 2, 3], tmp_path / "list.pt")
    _one_line_error("not a state dict", weights=str(tmp_path / "list.pt"))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "keys.pt")
    _one_line_error("no features", weights=str(tmp_path / "keys.pt"))
    torch.save({k: v for k, v in state.items() if k != "features.0.weight"}, tmp_path / "short.pt")
    _one_line_error("missing features.0.weight", weights=str(tmp_path / "short.pt"))
    torch.save({**state, "features.4.weight": torch.zeros(3, 3)}, tmp_path / "shape.pt")
    _one_line_error(r"features.4.weight has shape \(3, 3\)", weights=str(tmp_path / "shape.pt"))


def test_offline_without_cached_weights_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(backbones, "_reachable", lambda host, *a, **k: False)
    message = _one_line_error("not in torchvision's cache", pretrained=True)
    assert "--weights PATH" in message and "--no-pretrained" in message


def test_random_init_warns_and_says_none():
    with pytest.warns(UserWarning, match="random initialisation"):
        features, used = vgg11_bn_features(pretrained=False)
    assert used == "none" and len(features) == 29


# ---------------------------------------------------------------------------------------------
# The method


def test_registered_presets_and_params():
    assert methods.get("fcdd") is FCDD
    assert FCDD.supervision == "masks" and FCDD.maps_smoothed
    for preset in ("paper", "cpu"):
        for profile in PROFILES:
            params = FCDD.preset(preset, profile)
            assert params["profile"] == profile and params["sigma"] == PROFILES[profile].sigma[preset]
            assert set(params) <= set(FCDD.param_names())
            assert FCDD(**params).get_params() == {**FCDD().get_params(), **params}
    appendix_c = {"fmnist": 1.2, "cifar10": 1.2, "imagenet": 8.0, "voc": 8.0, "mvtec": 12.0}
    assert {name: FCDD.preset("paper", name)["sigma"] for name in PROFILES} == appendix_c
    paper = FCDD.preset("paper", "mvtec")
    assert (paper["epochs"], paper["passes_per_epoch"], paper["batch_size"], paper["optimizer"], paper["lr"],
            paper["weight_decay"], paper["schedule"]) == (200, 10, 128, "sgd", 1e-3, 1e-4, "exponential:0.985")
    assert FCDD.preset("paper", "cifar10")["schedule"] == "milestones:400,500"
    assert FCDD.preset("paper", "fmnist")["schedule"] == "exponential:0.98"
    with pytest.raises(XadError):
        FCDD.preset("gpu", "mvtec")


def _toy(channels: int, size: int, n: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    nominal = [Sample(0.4 + 0.2 * torch.rand(channels, size, size, generator=g), 0) for _ in range(n)]
    mask = torch.zeros(size * 2, size * 2, dtype=torch.bool)  # masks at their own resolution
    mask[4:12, 4:12] = True
    defect = nominal[0].image.clone()
    defect[:, 2:6, 2:6] = 1.0
    return nominal, [Sample(defect, 1, mask=mask)]


FAST = dict(epochs=2, batch_size=8, device="cpu", small=True, pretrained=False, predict_batch_size=5)


@pytest.mark.slow
@pytest.mark.parametrize("profile,channels,size", [("fmnist", 1, 28), ("cifar10", 3, 32), ("mvtec", 3, 48)])
def test_fit_predict_shapes_and_finite(profile, channels, size):
    nominal, defects = _toy(channels, size)
    images = torch.rand(7, channels, size, size)
    untouched = images.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = FCDD(**{**FAST, "profile": profile, "sigma": PROFILES[profile].sigma["paper"]})
        assert model.fit(TrainData(nominal, anomalies=defects)) is model
    prediction = model.predict(images)
    assert isinstance(prediction, Prediction) and model.pixel_loss_ and model.weights_used_ == "none"
    assert prediction.score.shape == (7,) and prediction.anomaly_map.shape == (7, size, size)
    assert prediction.score.dtype == np.float32 and prediction.anomaly_map.dtype == np.float32
    assert np.isfinite(prediction.score).all() and np.isfinite(prediction.anomaly_map).all()
    assert (prediction.anomaly_map >= 0).all()
    assert torch.equal(images, untouched)
    assert len(model.losses_) == 2 and all(math.isfinite(v) for v in model.losses_)
    # Batched prediction equals one image at a time.
    single = model.predict(images[3:4])
    np.testing.assert_allclose(single.anomaly_map[0], prediction.anomaly_map[3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(single.score[0], prediction.score[3], rtol=1e-5)


def test_same_seed_same_output():
    nominal, defects = _toy(3, 32, n=8)
    images = torch.rand(3, 3, 32, 32)
    params = {**FAST, "epochs": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        rng_state = torch.random.get_rng_state()
        first = FCDD(**params).fit(TrainData(nominal, anomalies=defects, confetti=True)).predict(images)
        assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's RNG is untouched
        again = FCDD(**params).fit(TrainData(nominal, anomalies=defects, confetti=True)).predict(images)
        other = FCDD(**{**params, "seed": 1}).fit(TrainData(nominal, anomalies=defects, confetti=True)).predict(images)
    np.testing.assert_array_equal(first.score, again.score)
    np.testing.assert_array_equal(first.anomaly_map, again.anomaly_map)
    assert not np.array_equal(first.score, other.score)


def test_loss_choice_follows_the_supervision(monkeypatch):
    nominal, defects = _toy(1, 28, n=4)
    unmasked = [Sample(defects[0].image, 1)]
    params = {**FAST, "profile": "fmnist", "epochs": 1}
    assert FCDD(**params).fit(TrainData(nominal, confetti=True)).pixel_loss_ is False
    assert FCDD(**params).fit(TrainData(nominal, anomalies=unmasked)).pixel_loss_ is False
    assert FCDD(**params).fit(TrainData(nominal, confetti=True, confetti_masks=True)).pixel_loss_ is True
    assert FCDD(**params).fit(TrainData(nominal, anomalies=unmasked + defects)).pixel_loss_ is True


def test_pretrained_vgg_from_a_file_is_recorded(fake_weights):
    path, _ = fake_weights
    net, used = build_net("mvtec", 1, weights=str(path))
    assert used.startswith("file:fake_vgg.pt sha256:")
    assert net(torch.rand(1, 1, 64, 64)).shape == (1, 1, 8, 8)  # greyscale repeated to 3 channels


def test_predict_before_fit_and_wrong_channels():
    with pytest.raises(NotFittedError):
        FCDD().predict(torch.rand(1, 3, 32, 32))
    nominal, _ = _toy(1, 28, n=4)
    model = FCDD(**{**FAST, "profile": "fmnist", "epochs": 1}).fit(TrainData(nominal))
    with pytest.raises(XadError, match="1-channel"):
        model.predict(torch.rand(1, 3, 28, 28))


def test_predict_upsamples_with_sigma_in_input_pixels_read_at_call_time():
    nominal, defects = _toy(3, 48)
    images = torch.rand(2, 3, 48, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = FCDD(**{**FAST, "epochs": 1, "profile": "mvtec", "sigma": 7.0}).fit(TrainData(nominal, anomalies=defects))
    with torch.inference_mode():
        low = model.net_.heatmap(images)
    for sigma in (7.0, 3.0):
        model.sigma = sigma
        expected = receptive_upsample(low, model.field_, sigma, (48, 48))
        np.testing.assert_allclose(model.predict(images).anomaly_map, expected.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("profile,channels,size,pretrained", [
    ("fmnist", 1, 28, False), ("mvtec", 3, 32, False), ("mvtec", 3, 32, True)])
@pytest.mark.slow
def test_checkpoint_round_trip_predicts_the_same(tmp_path, fake_weights, profile, channels, size, pretrained):
    from xadbench import run_folder

    nominal, defects = _toy(channels, size)
    images = torch.rand(3, channels, size, size)
    params = {**FAST, "epochs": 1, "profile": profile, "pretrained": pretrained}
    if pretrained:
        params["weights"] = str(fake_weights[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = FCDD(**params).fit(TrainData(nominal, anomalies=defects))
    path = tmp_path / "checkpoints" / "job.pt"
    run_folder.save_checkpoint(path, {"method": "fcdd", "state": model.checkpoint()})
    assert list(path.parent.iterdir()) == [path]  # no temporary file left
    torch.load(path, weights_only=True)  # plain values and tensors only
    loaded = run_folder.load_checkpoint(path)
    assert isinstance(loaded, FCDD) and loaded.get_params() == model.get_params()
    assert loaded.weights_used_ == model.weights_used_ and loaded.losses_ == model.losses_
    before, after = model.predict(images), loaded.predict(images)
    np.testing.assert_array_equal(before.score, after.score)
    np.testing.assert_array_equal(before.anomaly_map, after.anomaly_map)


def test_unreadable_checkpoints_are_one_line_errors(tmp_path):
    from xadbench import run_folder

    with pytest.raises(XadError, match="no such checkpoint"):
        run_folder.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(XadError, match="bad.pt: not a readable xadbench checkpoint"):
        run_folder.load_checkpoint(bad)


def test_a_checkpoint_this_version_cannot_load_is_a_one_line_error(tmp_path):
    from xadbench import run_folder

    nominal, defects = _toy(1, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = FCDD(**{**FAST, "epochs": 1, "profile": "fmnist"}).fit(TrainData(nominal, anomalies=defects))
    state = model.checkpoint()
    state["params"] = {**state["params"], "renamed_option": 1}
    run_folder.save_checkpoint(tmp_path / "old.pt", {"method": "fcdd", "state": state})
    with pytest.raises(XadError, match=r"old.pt: a 'fcdd' checkpoint this version cannot load \(TypeError"):
        run_folder.load_checkpoint(tmp_path / "old.pt")


def test_score_is_the_mean_of_the_heatmap_computed_from_the_net():
    """Section 3: the anomaly score is ‖A(x)‖₁/(u·v), the mean of A = sqrt(φ(x)² + 1) − 1 over the
    low-resolution map; computed here from the fitted net's raw output φ, not through predict."""
    nominal, defects = _toy(3, 32)
    model = FCDD(**{**FAST, "profile": "cifar10", "sigma": 1.2}).fit(TrainData(nominal, anomalies=defects))
    images = torch.rand(6, 3, 32, 32)
    images[0, :, 8:20, 8:20] = 1.0  # one image with a local anomaly, so mean and max disagree
    with torch.no_grad():
        phi = model.net_(images)[:, 0].double()
    a = torch.sqrt(phi**2 + 1) - 1
    assert a.shape[-2:] != (1, 1) and not torch.allclose(a.mean((1, 2)), a.amax((1, 2)))
    np.testing.assert_allclose(model.predict(images).score, a.mean((1, 2)).numpy(), rtol=1e-5)


def test_masks_train_with_eq_3_on_the_upsampled_map(monkeypatch):
    """Whenever masks are given, every training step's loss is eq. 3 on A′ (at the input's
    resolution) against the masks of the batch, never eq. 2; the loss it returns is eq. 3 of
    those arguments, computed here from the paper's formula."""
    from xadbench.methods import fcdd as fcdd_module

    calls = {"eq2": 0, "eq3": []}
    real_pixel_loss, real_image_loss = fcdd_module.fcdd_pixel_loss, fcdd_module.fcdd_loss

    def eq3(heatmap_up, masks):
        calls["eq3"].append((heatmap_up.detach().clone(), masks.detach().clone()))
        return real_pixel_loss(heatmap_up, masks)

    def eq2(heatmap, labels):
        calls["eq2"] += 1
        return real_image_loss(heatmap, labels)

    monkeypatch.setattr(fcdd_module, "fcdd_pixel_loss", eq3)
    monkeypatch.setattr(fcdd_module, "fcdd_loss", eq2)
    nominal, defects = _toy(1, 28, n=8)
    FCDD(**{**FAST, "profile": "fmnist", "epochs": 2}).fit(TrainData(nominal, anomalies=defects * 4))
    assert calls["eq2"] == 0 and len(calls["eq3"]) >= 2
    for up, masks in calls["eq3"]:
        assert up.shape[-2:] == (28, 28) and masks.shape == up.shape
        # Eq. 3 by hand: per image, mean over pixels of (1 − m)·A′ plus −log(1 − exp(−mean(m·A′)))
        # for images with anomalous pixels; the batch mean of that.
        per_image = []
        for a, m in zip(up.double(), masks.double()):
            term = ((1 - m) * a).mean()
            if m.max() > 0:
                term = term - torch.log(-torch.expm1(-(m * a).mean()))
            per_image.append(term)
        np.testing.assert_allclose(float(real_pixel_loss(up, masks)), float(torch.stack(per_image).mean()), rtol=1e-4)
    assert any(m.sum() > 0 for _, m in calls["eq3"])


# ---------------------------------------------------------------------------------------------
# Appendix A's nets (receptive-field study)

#: Receptive fields printed in the paper's Table 4 (MVTec-AD, k = 3 ... 13) and Table 3 (CIFAR-10,
#: k = 3 ... 17).
TABLE_4 = {3: 53, 5: 91, 7: 129, 9: 167, 11: 205, 13: 243}
TABLE_3 = {3: 18, 5: 20, 7: 22, 9: 24, 11: 26, 13: 28, 15: 30, 17: 32}


@pytest.mark.parametrize("kernel, field", TABLE_4.items())
def test_kernel_net_for_mvtec_has_table_4s_receptive_field(kernel, field):
    from xadbench.methods.fcdd_net import kernel_net

    net = kernel_net("vgg", 3, kernel, narrow=True)  # the widths do not change the field
    assert receptive_field(net, 224).extent == field
    assert net(torch.zeros(1, 3, 224, 224)).shape == (1, 1, 28, 28)  # appendix D's 28×28 output at 224 px
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net) == 6 and sum(isinstance(m, torch.nn.MaxPool2d) for m in net) == 3


@pytest.mark.parametrize("kernel, field", TABLE_3.items())
def test_kernel_net_for_cifar10_has_table_3s_receptive_field(kernel, field):
    from xadbench.methods.fcdd_net import kernel_net

    net = kernel_net("cifar10", 3, kernel, narrow=True)
    assert receptive_field(net, 32).extent == field
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net) == 4 and sum(isinstance(m, torch.nn.MaxPool2d) for m in net) == 2


def test_kernel_hyperparameter_trains_appendix_a_net_and_round_trips(tmp_path):
    from xadbench.methods.fcdd_net import kernel_net

    nominal, defect = _toy(3, 32, n=8)
    model = FCDD(profile="mvtec", kernel=5, small=True, epochs=1, batch_size=4, sigma=4.0, device="cpu",
                 weights=str(tmp_path / "unused.pt")).fit(TrainData(nominal, confetti=True))
    assert model.weights_used_ == "none" and model.field_.extent == 91
    assert [type(m) for m in model.net_.body] == [type(m) for m in kernel_net("vgg", 3, 5, narrow=True)]
    images = torch.stack([s.image for s in nominal[:3]])
    loaded = FCDD.from_checkpoint(model.checkpoint())
    np.testing.assert_array_equal(loaded.predict(images).anomaly_map, model.predict(images).anomaly_map)
    with pytest.raises(XadError, match="fmnist"):
        FCDD(profile="fmnist", kernel=3, epochs=1, device="cpu").fit(TrainData(_toy(1, 28, n=4)[0]))
