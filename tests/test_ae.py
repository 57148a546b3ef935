"""The L2 autoencoder baseline: heatmap = squared reconstruction error, nominal-only training."""
import math

import numpy as np
import pytest
import torch

from xadbench.errors import NotFittedError, XadError
from xadbench.methods.ae import AutoEncoder, ConvAutoEncoder, bottleneck_plan
from xadbench.registry import methods
from xadbench.types import Sample, TrainData


def tiny_train(n: int, channels: int, size: int, seed: int = 0, **kwargs) -> TrainData:
    g = torch.Generator().manual_seed(seed)
    base = torch.linspace(0.2, 0.8, size).view(1, 1, size)
    nominal = [Sample((base + 0.05 * torch.rand(channels, size, size, generator=g)).clamp(0, 1), 0)
               for _ in range(n)]
    return TrainData(nominal=nominal, **kwargs)


def fit(profile: str, channels: int, size: int, seed: int = 0, train: TrainData | None = None, **params):
    kwargs = {**AutoEncoder.preset("cpu", profile), "epochs": 2, "batch_size": 4, "device": "cpu", **params}
    torch.manual_seed(seed)
    return AutoEncoder(**kwargs).fit(train or tiny_train(8, channels, size))


def test_registered_with_no_supervision():
    assert methods.get("ae") is AutoEncoder
    assert AutoEncoder.supervision == "none" and AutoEncoder.maps_smoothed is False


@pytest.mark.parametrize("size,stages,final", [(128, 4, 8), (256, 5, 8), (224, 5, 7), (64, 3, 8), (32, 2, 8), (28, 2, 7)])
def test_bottleneck_plan_and_shapes(size, stages, final):
    assert bottleneck_plan(size, size) == (stages, (final, final))
    model = ConvAutoEncoder(3, (size, size), 8, 10, torch.zeros(3), torch.ones(3))
    code = model.encoder(torch.rand(1, 3, size, size))
    assert code.shape == (1, 10, 1, 1)  # a 1x1 latent: the bottleneck of AE-L2
    out = model(torch.rand(2, 3, size, size))
    assert out.shape == (2, 3, size, size) and out.min() >= 0 and out.max() <= 1


def test_heatmap_is_the_hand_computed_squared_error():
    model = fit("cifar10", 3, 32)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    prediction = model.predict(x)
    net = model.model_
    with torch.no_grad():
        mean, std = net.standardise.mean, net.standardise.std
        recon = torch.sigmoid(net.decoder(net.encoder((x - mean) / std)))
    expected = ((recon - x) ** 2).sum(dim=1).numpy() / 3
    np.testing.assert_allclose(prediction.anomaly_map, expected, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(prediction.score, expected.mean(axis=(1, 2)), rtol=1e-4)


def test_anomalies_are_ignored():
    nominal = tiny_train(8, 3, 32)
    stains = [Sample(torch.zeros(3, 32, 32), 1, torch.ones(32, 32, dtype=torch.bool)) for _ in range(4)]
    with_anomalies = TrainData(nominal=nominal.nominal, anomalies=stains, confetti=True, confetti_masks=True)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    plain = fit("cifar10", 3, 32, seed=3, train=nominal).predict(x)
    given = fit("cifar10", 3, 32, seed=3, train=with_anomalies).predict(x)
    np.testing.assert_array_equal(plain.anomaly_map, given.anomaly_map)
    np.testing.assert_array_equal(plain.score, given.score)


@pytest.mark.slow
@pytest.mark.parametrize("profile,channels,size", [("fmnist", 1, 28), ("cifar10", 3, 32), ("imagenet", 3, 64)])
def test_fit_predict_shapes_finite_and_seeded(profile, channels, size):
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(4))
    first, second = (fit(profile, channels, size, seed=5).predict(x) for _ in range(2))
    assert first.score.shape == (3,) and first.anomaly_map.shape == (3, size, size)
    assert first.score.dtype == np.float32 and first.anomaly_map.dtype == np.float32
    assert np.isfinite(first.score).all() and np.isfinite(first.anomaly_map).all()
    np.testing.assert_array_equal(first.score, second.score)
    np.testing.assert_array_equal(first.anomaly_map, second.anomaly_map)


@pytest.mark.slow
def test_training_reduces_the_reconstruction_error():
    model = fit("cifar10", 3, 32, epochs=8, lr=3e-3)
    assert model.losses_[-1] < model.losses_[0] and all(math.isfinite(v) for v in model.losses_)
    assert model.weights_used_ == "none"


def test_augmentation_path_runs():
    model = fit("mvtec", 3, 32, augment=True, epochs=1)
    assert np.isfinite(model.predict(torch.rand(1, 3, 32, 32)).score).all()


def test_predict_before_fit_and_wrong_size_raise():
    with pytest.raises(NotFittedError):
        AutoEncoder().predict(torch.rand(1, 3, 32, 32))
    with pytest.raises(XadError, match="fitted on images"):
        fit("cifar10", 3, 32, epochs=1).predict(torch.rand(1, 3, 28, 28))


def test_presets():
    for profile in ("fmnist", "cifar10", "imagenet", "voc", "mvtec"):
        for preset in ("cpu", "paper"):
            params = AutoEncoder.preset(preset, profile)
            assert params["profile"] == profile
            assert set(params) <= set(AutoEncoder.param_names())
    paper = AutoEncoder.preset("paper", "mvtec")
    assert (paper["optimizer"], paper["lr"], paper["weight_decay"], paper["latent"]) == ("adam", 2e-4, 1e-5, 100)
