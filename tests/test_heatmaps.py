import numpy as np
import pytest
import torch

from xadbench.heatmaps import blur, gaussian_kernel, quantile_normalise, resize_map


@pytest.mark.parametrize("size", [5, 6])
def test_gaussian_kernel_values(size):
    sigma = 1.5
    k = gaussian_kernel(size, sigma, normalise=False)
    c = (size - 1) / 2
    expected = np.array(
        [[np.exp(-((i - c) ** 2 + (j - c) ** 2) / (2 * sigma**2)) for j in range(size)]
         for i in range(size)]
    )
    assert k.dtype == torch.float32 and k.shape == (size, size)
    np.testing.assert_allclose(k.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(k.numpy(), k.numpy()[::-1, ::-1])  # centred
    assert gaussian_kernel(size, sigma, normalise=True).sum().item() == pytest.approx(1, abs=1e-6)


def test_gaussian_kernel_peak_one_for_odd_size():
    assert gaussian_kernel(7, 2.0, normalise=False).max().item() == 1.0


def test_blur_of_delta_is_the_kernel_brute_force():
    size, sigma, h, w = 5, 1.2, 15, 17
    delta = np.zeros((1, h, w), np.float32)
    delta[0, 7, 8] = 1
    kernel = gaussian_kernel(size, sigma, normalise=True).numpy()
    r = size // 2
    expected = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    # Replicate padding: out-of-range indices read the nearest border pixel.
                    yy, xx = min(max(y + dy, 0), h - 1), min(max(x + dx, 0), w - 1)
                    expected[y, x] += kernel[dy + r, dx + r] * delta[0, yy, xx]
    out = blur(delta, size, sigma)
    np.testing.assert_allclose(out[0], expected, atol=1e-7)
    np.testing.assert_allclose(out[0, 5:10, 6:11], kernel, atol=1e-7)


def test_blur_replicates_borders_brute_force():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 6, 5)).astype(np.float32)
    size, sigma = 9, 2.0  # larger than the map
    kernel = gaussian_kernel(size, sigma, normalise=True).numpy()
    r = size // 2
    expected = np.zeros(maps.shape)
    for n in range(2):
        for y in range(6):
            for x in range(5):
                for dy in range(-r, r + 1):
                    for dx in range(-r, r + 1):
                        yy, xx = min(max(y + dy, 0), 5), min(max(x + dx, 0), 4)
                        expected[n, y, x] += kernel[dy + r, dx + r] * maps[n, yy, xx]
    np.testing.assert_allclose(blur(maps, size, sigma), expected, atol=1e-6)


@pytest.mark.parametrize("size", [3, 4, 16, 62])
def test_blur_shape_and_constant(size):
    maps = np.full((3, 28, 28), 2.5, np.float32)
    out = blur(maps, size, sigma=8.0)
    assert out.shape == maps.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, 2.5, rtol=1e-5)


def test_blur_even_kernel_shift_at_most_half_pixel():
    delta = np.zeros((1, 21, 21), np.float32)
    delta[0, 10, 10] = 1
    out = blur(delta, 6, 1.5)[0]
    ys, xs = np.mgrid[:21, :21]
    centre = np.array([(out * ys).sum(), (out * xs).sum()]) / out.sum()
    assert np.all(np.abs(centre - 10) <= 0.5 + 1e-6)


def test_resize_identity_and_bilinear():
    m = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(resize_map(m, (3, 4)), m)
    # align_corners=False: doubling [[0, 2]] samples at x = -0.25, 0.25, 0.75, 1.25 -> clamped.
    np.testing.assert_allclose(
        resize_map(np.array([[0.0, 2.0]]), (1, 4)), [[0.0, 0.5, 1.5, 2.0]], atol=1e-6
    )
    assert resize_map(m, (6, 8)).shape == (6, 8) and resize_map(m, (6, 8)).dtype == np.float32


def test_quantile_normalise_local_hand_computed():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 9, 11)).astype(np.float32) * 3 + 1
    out = quantile_normalise(maps, 0.85)
    for m, o in zip(maps.astype(np.float64), out):
        d = m - m.min()
        np.testing.assert_allclose(o, np.clip(d / np.quantile(d, 0.85), 0, 1), atol=1e-5)
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert (out == 1).mean() == pytest.approx(0.15, abs=0.03)


def test_quantile_normalise_global_is_label_balanced():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 5, 5)).astype(np.float32)
    maps[7:] += 5  # the three anomalies are much hotter
    labels = np.array([0] * 7 + [1] * 3)
    out = quantile_normalise(maps, 0.5, reference="global", labels=labels, seed=3)
    chosen = np.sort(np.concatenate([
        np.random.default_rng(3).choice(np.arange(7), 3, replace=False), [7, 8, 9]
    ]))
    ref = maps[chosen].astype(np.float64)
    lo = ref.min()
    expected = np.clip((maps - lo) / np.quantile(ref - lo, 0.5), 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)
    # Balanced: the median falls between the nominal and anomalous halves, unlike an
    # unbalanced reference whose median would be a nominal value.
    assert out[7:].min() == 1.0 and out[:7].max() < 1.0


def test_quantile_normalise_constant_and_errors():
    maps = np.full((2, 4, 4), 3.0, np.float32)
    for ref in ("local", "global"):
        out = quantile_normalise(maps, 0.9, ref, labels=[0, 1])
        assert not np.isnan(out).any() and (out == 0).all()
    with pytest.raises(ValueError, match="labels"):
        quantile_normalise(maps, 0.9, "global")
    with pytest.raises(ValueError, match="both labels"):
        quantile_normalise(maps, 0.9, "global", labels=[0, 0])
    with pytest.raises(ValueError, match="eta"):
        quantile_normalise(maps, 0.0)
