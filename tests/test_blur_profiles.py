"""The baselines' shared blur (paper sec. 4: "the same Gaussian kernel we use for FCDD") against
an independent brute-force Gaussian: kernel size = the receptive field of the paper's FCDD net for
the data set, σ = the upsampling σ of appendix C (MVTec-AD's cpu preset: 7 px at 128 px, see
xadbench.profiles). The expected sizes and σ are written out here, not read from the profiles."""
from __future__ import annotations

import numpy as np
import pytest

from xadbench import runner
from xadbench.heatmaps import PostProcessor
from xadbench.profiles import PROFILES

#: profile -> (kernel size, {preset: σ}).
EXPECTED = {
    "fmnist": (16, {"cpu": 1.2, "paper": 1.2}),
    "cifar10": (22, {"cpu": 1.2, "paper": 1.2}),
    "imagenet": (62, {"cpu": 8.0, "paper": 8.0}),
    "voc": (62, {"cpu": 8.0, "paper": 8.0}),
    "mvtec": (62, {"cpu": 7.0, "paper": 12.0}),
}


def brute_force_blur(maps: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Every output pixel as the explicit weighted sum over its size×size window of the
    edge-padded map, weights exp(-d²/2σ²) normalised to sum 1, centred at (size-1)/2; for an even
    size the window starts (size-1)//2 pixels before the pixel (half a pixel towards top left)."""
    centre = (size - 1) / 2
    offsets = np.arange(size) - centre
    kernel = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    kernel /= kernel.sum()
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    padded = np.pad(maps.astype(np.float64), ((0, 0), (before, after), (before, after)), mode="edge")
    h, w = maps.shape[1:]
    out = np.zeros(maps.shape, dtype=np.float64)
    for a in range(size):
        for b in range(size):
            out += kernel[a, b] * padded[:, a : a + h, b : b + w]
    return out


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_profiles_carry_the_papers_kernel(profile):
    size, sigmas = EXPECTED[profile]
    assert PROFILES[profile].receptive_field == size
    assert PROFILES[profile].sigma == pytest.approx(sigmas)


@pytest.mark.parametrize("profile", list(EXPECTED))
@pytest.mark.parametrize("preset", ["cpu", "paper"])
def test_postprocess_blurs_baselines_with_the_profiles_gaussian(profile, preset):
    size, sigmas = EXPECTED[profile]
    rng = np.random.default_rng(0)
    maps = rng.random((2, 20, 27)).astype(np.float32)
    maps[0, 5, 9] = 30.0  # a peak, so the kernel's size and width show
    baseline = PostProcessor(size=PROFILES[profile].receptive_field, sigma=PROFILES[profile].sigma[preset],
                             maps_smoothed=False)
    np.testing.assert_allclose(baseline(maps, "gaussian"), brute_force_blur(maps, size, sigmas[preset]), rtol=1e-4, atol=1e-5)
    fcdd = PostProcessor(size=size, sigma=sigmas[preset], maps_smoothed=True)
    assert np.array_equal(fcdd(maps, "gaussian"), maps)  # FCDD: as is
    assert np.array_equal(baseline(maps, "none"), maps)


@pytest.mark.slow
def test_a_job_scores_the_baselines_maps_blurred_with_the_profiles_kernel(monkeypatch):
    """End to end through run_job (synthetic data: the mvtec profile, cpu preset, 128 px): the maps
    the gaussian policy scores are the raw maps blurred with the 62 px, σ = 7 px Gaussian."""
    scored = []
    real_evaluate = runner.evaluate

    def recording_evaluate(prediction, test):
        scored.append(prediction.anomaly_map.copy())
        return real_evaluate(prediction, test)

    monkeypatch.setattr(runner, "evaluate", recording_evaluate)
    spec = runner.JobSpec(dataset="synthetic", class_name="fabric", method="pixelstats", blur=("gaussian", "none"))
    runner.run_job(spec)
    blurred, raw = scored
    size, sigmas = EXPECTED["mvtec"]
    assert raw.shape[-2:] == (128, 128)
    # Both scored as the predictions file keeps them (float16): the blurred maps round once more.
    np.testing.assert_allclose(blurred[:3], brute_force_blur(raw[:3], size, sigmas["cpu"]), rtol=1e-3, atol=1e-5)
