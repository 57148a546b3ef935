"""The gradient baseline: HSC objective (paper eq. 1), Captum attributions, variants, fit/predict."""
import math
import warnings

import numpy as np
import pytest
import torch

from xadbench.errors import NotFittedError, XadError
from xadbench.method import Variant
from xadbench.methods.grad import (
    GRAD_CAM, GRAD_IG, GRAD_SMOOTH, GradSaliency, build_network, cam_layer, hsc_loss, pseudo_huber,
)
from xadbench.registry import methods
from xadbench.types import Sample, TrainData


def tiny_train(n: int, channels: int, size: int, seed: int = 0, **kwargs) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.3, 0.7, size).view(1, 1, size)
    nominal = [Sample((base + 0.05 * torch.rand(channels, size, size, generator=g)).clamp(0, 1), 0)
               for _ in range(n)]
    return TrainData(nominal=nominal, **kwargs)


def fitted(name: str = "grad", profile: str = "cifar10", channels: int = 3, size: int = 32, seed: int = 0,
           **params):
    plugin = methods.get(name)
    kwargs = {**plugin.preset("cpu", profile), "epochs": 1, "batch_size": 8, "device": "cpu", **params}
    torch.manual_seed(seed)
    return plugin(**kwargs).fit(tiny_train(8, channels, size, confetti=True))


@pytest.fixture(scope="module")
def cifar_model() -> GradSaliency:
    return fitted()


# -- the HSC objective -------------------------------------------------------------------------
def test_pseudo_huber_matches_formula_and_is_exact_for_tiny_inputs():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1e-4, 0.0]], dtype=torch.float64)
    expected = [math.sqrt(26) - 1, 0.0, 0.5e-8 - 0.125e-16]
    np.testing.assert_allclose(pseudo_huber(a).numpy(), expected, rtol=1e-12)
    # float32: the naive sqrt(x + 1) - 1 rounds 1e-8 to 0; ours keeps it.
    tiny = pseudo_huber(torch.tensor([[1e-4, 0.0]], dtype=torch.float32))
    assert tiny.item() == pytest.approx(0.5e-8, rel=1e-5)


def test_hsc_loss_hand_computed():
    h = torch.tensor([0.5, 2.0, 1.0, 0.1])
    labels = torch.tensor([0.0, 1.0, 0.0, 1.0])
    expected = (0.5 - math.log(1 - math.exp(-2.0)) + 1.0 - math.log(1 - math.exp(-0.1))) / 4
    assert hsc_loss(h, labels).item() == pytest.approx(expected, rel=1e-5)


def test_hsc_loss_only_nominal_is_mean_h_and_only_anomalies_is_mean_log_term():
    h = torch.tensor([0.2, 3.0, 7.0])
    assert hsc_loss(h, torch.zeros(3)).item() == pytest.approx(h.mean().item(), rel=1e-6)
    expected = np.mean([-math.log(1 - math.exp(-v)) for v in h.tolist()])
    assert hsc_loss(h, torch.ones(3)).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("value", [0.0, 1e-30, 1e-12, 1e-6])
def test_hsc_loss_is_finite_with_finite_gradient_near_the_centre(value):
    features = torch.full((2, 4), value, requires_grad=True)
    loss = hsc_loss(pseudo_huber(features), torch.tensor([1.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
    assert loss.item() <= -math.log(1e-9) + 1e-3  # bounded by -log(eps)


def test_hsc_loss_large_h_anomaly_term_vanishes():
    assert hsc_loss(torch.tensor([50.0]), torch.tensor([1.0])).item() == pytest.approx(0.0, abs=1e-9)


# -- Captum integration --------------------------------------------------------------------------
@pytest.mark.slow
def test_saliency_equals_abs_input_gradient_max_over_channels(cifar_model):
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    prediction = cifar_model.predict(x)
    xg = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(cifar_model.model_.score(xg).sum(), xg)
    expected = grad.abs().amax(dim=1).numpy()
    np.testing.assert_allclose(prediction.anomaly_map, expected, rtol=1e-4, atol=1e-8)
    with torch.no_grad():
        np.testing.assert_allclose(prediction.score, cifar_model.model_.score(x).numpy(), rtol=1e-5)
    assert prediction.anomaly_map.max() > 0


def test_variants_resolve_through_the_registry():
    assert methods.get("grad") is GradSaliency
    for name, obj, attribution in (("grad-ig", GRAD_IG, "integrated_gradients"),
                                   ("grad-smooth", GRAD_SMOOTH, "smoothgrad"), ("grad-cam", GRAD_CAM, "gradcam")):
        plugin = methods.get(name)
        assert plugin is obj and isinstance(plugin, Variant)
        assert plugin.preset("cpu", "mvtec")["attribution"] == attribution
        assert plugin(profile="cifar10").attribution == attribution
        assert plugin.supervision == "labels" and plugin.maps_smoothed is False


@pytest.mark.slow
def test_variants_give_the_same_scores_but_different_maps(cifar_model):
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    saliency = cifar_model.predict(x)
    for name in ("grad-ig", "grad-smooth", "grad-cam"):
        other = fitted(name)  # same seed, same training: only the attribution differs
        prediction = other.predict(x)
        np.testing.assert_allclose(prediction.score, saliency.score, rtol=1e-5)
        assert np.isfinite(prediction.anomaly_map).all() and prediction.anomaly_map.min() >= 0
        assert not np.allclose(prediction.anomaly_map, saliency.anomaly_map, rtol=1e-3, atol=1e-6), name


def weighted_activations(model: GradSaliency, x: torch.Tensor) -> torch.Tensor:
    """Σ_k α_k A^k (B, 1, h, w) with α_k the mean over positions of ∂h/∂A^k (Selvaraju et al.,
    2017, eq. 1–2), from a forward hook on the Grad-CAM layer and autograd."""
    activations = []
    handle = cam_layer(model.model_).register_forward_hook(lambda module, inputs, output: activations.append(output))
    score = model.model_.score(x.clone().requires_grad_())
    handle.remove()
    (grad,) = torch.autograd.grad(score.sum(), activations[0])
    return (grad.mean(dim=(2, 3), keepdim=True) * activations[0]).sum(dim=1, keepdim=True).detach()


def test_gradcam_is_relu_of_gradient_weighted_activations_upsampled_bilinearly():
    """The map is ReLU(Σ_k α_k A^k) upsampled bilinearly to the input, for the trained net and
    for one whose first dense layer is redrawn so that the weighted sum is partly negative (the
    trained net's is positive everywhere, which would not tell the ReLU apart)."""
    model = fitted("grad-cam")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    for redraw in (False, True):
        if redraw:
            torch.manual_seed(10)
            with torch.no_grad():
                model.model_.head[1].weight.normal_(0, 0.05)
                model.model_.head[1].bias.normal_(0, 1)
        raw = weighted_activations(model, x)
        assert raw.shape[-1] == 8  # the small cifar10 net's last activation, before its last 2×2 pool
        assert (raw < 0).any() == redraw
        expected = torch.nn.functional.interpolate(torch.relu(raw), size=(32, 32), mode="bilinear",
                                                   align_corners=False)[:, 0].numpy()
        np.testing.assert_allclose(model.predict(x).anomaly_map, expected, rtol=1e-4, atol=1e-6 * float(expected.max()))
        assert expected.max() > 0


def test_gradcam_layer_of_the_vgg_net_is_the_last_relu_before_the_last_pool():
    with pytest.warns(UserWarning, match="random initialisation"):
        net, _ = build_network("mvtec", torch.zeros(1, 3, 64, 64), 8, 4, pretrained=False, weights=None)
    vgg_tail = net.features[1]
    assert cam_layer(net) is vgg_tail[-2] and isinstance(vgg_tail[-1], torch.nn.MaxPool2d)


@pytest.mark.slow
def test_smoothgrad_is_repeatable_per_image_and_leaves_the_global_rng_alone():
    model = fitted("grad-smooth")
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(123)
    first = model.predict(x)
    after = torch.rand(1)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after)
    single = model.predict(x[1:2])
    np.testing.assert_allclose(single.anomaly_map[0], first.anomaly_map[1], rtol=1e-5, atol=1e-8)


def test_integrated_gradients_completeness(cifar_model):
    """IG's attributions sum to score(x) − score(black) (Sundararajan et al., 2017): checks the
    black baseline and that the forward Captum sees is the anomaly score."""
    from captum.attr import IntegratedGradients

    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    ig = IntegratedGradients(cifar_model.model_.score)
    attr, delta = ig.attribute(x, baselines=torch.zeros_like(x), n_steps=64, return_convergence_delta=True)
    with torch.no_grad():
        gap = cifar_model.model_.score(x) - cifar_model.model_.score(torch.zeros_like(x))
    np.testing.assert_allclose(attr.sum(dim=(1, 2, 3)).numpy(), gap.numpy(), rtol=0.05, atol=1e-3)


# -- fit / predict -------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("profile,channels,size", [("fmnist", 1, 28), ("cifar10", 3, 32), ("imagenet", 3, 64)])
def test_fit_predict_shapes_finite_and_seeded(profile, channels, size):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init VGG warns
        runs = [fitted("grad", profile, channels, size, seed=7, pretrained=False) for _ in range(2)]
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(5))
    first, second = (m.predict(x) for m in runs)
    assert first.score.shape == (3,) and first.anomaly_map.shape == (3, size, size)
    assert first.score.dtype == np.float32 and first.anomaly_map.dtype == np.float32
    assert np.isfinite(first.score).all() and np.isfinite(first.anomaly_map).all()
    np.testing.assert_allclose(first.score, second.score, rtol=1e-5)
    np.testing.assert_allclose(first.anomaly_map, second.anomaly_map, rtol=1e-4, atol=1e-8)
    assert runs[0].weights_used_ == "none"
    assert runs[0].losses_ and all(math.isfinite(v) for v in runs[0].losses_)


@pytest.mark.slow
def test_vgg_backbone_first_layers_frozen_with_their_statistics():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plugin = GradSaliency(**{**GradSaliency.preset("cpu", "imagenet"), "pretrained": False, "device": "cpu",
                                 "epochs": 1, "batch_size": 4})
        torch.manual_seed(0)
        from xadbench import backbones
        model = plugin.fit(tiny_train(4, 3, 64, confetti=True)).model_
    frozen = model.features[0]
    assert isinstance(frozen, backbones.Frozen)
    bn = next(m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # untouched by training


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError):
        GradSaliency(profile="cifar10").predict(torch.rand(1, 3, 32, 32))


def test_unknown_attribution_and_wrong_input_size_raise(cifar_model):
    with pytest.raises(XadError, match="attribution"):
        GradSaliency(profile="cifar10", attribution="lime").fit(tiny_train(2, 3, 32, confetti=True))
    with pytest.raises(XadError, match="fitted on images"):
        cifar_model.predict(torch.rand(1, 3, 28, 28))


def test_no_anomalies_warns():
    with pytest.warns(UserWarning, match="no anomalies"):
        GradSaliency(**{**GradSaliency.preset("cpu", "cifar10"), "epochs": 1, "device": "cpu"}).fit(
            tiny_train(4, 3, 32))


def test_presets():
    for profile in ("fmnist", "cifar10", "imagenet", "voc", "mvtec"):
        for preset in ("cpu", "paper"):
            params = GradSaliency.preset(preset, profile)
            assert params["profile"] == profile
            assert set(params) <= set(GradSaliency.param_names())
    paper = GradSaliency.preset("paper", "mvtec")
    assert (paper["epochs"], paper["passes_per_epoch"], paper["optimizer"], paper["lr"]) == (200, 10, "sgd", 1e-3)
    assert GradSaliency.supervision == "labels" and GradSaliency.maps_smoothed is False


def test_small_uses_fcdd_narrow_widths_for_the_28_and_32_px_nets():
    from xadbench.backbones import SMALL_CIFAR10_WIDTHS, SMALL_FMNIST_WIDTH
    from xadbench.methods.grad import small_features

    widths = [m.out_channels for m in small_features("cifar10", 3, narrow=True) if isinstance(m, torch.nn.Conv2d)]
    assert widths == [SMALL_CIFAR10_WIDTHS[0], SMALL_CIFAR10_WIDTHS[1], SMALL_CIFAR10_WIDTHS[1], SMALL_CIFAR10_WIDTHS[2]]
    widths = [m.out_channels for m in small_features("fmnist", 1, narrow=True) if isinstance(m, torch.nn.Conv2d)]
    assert widths == [SMALL_FMNIST_WIDTH] * 2
    assert GradSaliency.preset("cpu", "cifar10")["small"] and not GradSaliency.preset("paper", "cifar10")["small"]
