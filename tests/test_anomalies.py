"""Training anomalies: confetti noise, online replacement, the Outlier Exposure limit."""
import math

import pytest
import torch

from xadbench.anomalies import (
    CONFETTI_MASK_MIN_CHANGE,
    AnomalyMixer,
    confetti_noise,
    limit_outlier_exposure,
)
from xadbench.types import Sample, TrainData


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("level", [0.0, 0.5, 1.0])
def test_confetti_masks_are_the_visibly_changed_pixels(level):
    images = torch.full((16, 3, 64, 64), level)
    noisy, masks = confetti_noise(images, _generator())
    change = (noisy - images).abs().amax(1)
    assert torch.equal(masks, change >= CONFETTI_MASK_MIN_CHANGE)
    assert noisy.min() >= 0 and noisy.max() <= 1
    # Black and white images lose the blobs of one sign to clamping; every image still shows one.
    assert masks.flatten(1).any(1).all()


@pytest.mark.slow
def test_confetti_covers_the_same_share_of_the_image_at_any_size():
    shares = {}
    for size in (64, 224):
        _, masks = confetti_noise(torch.full((80, 3, size, size), 0.5), _generator(2))
        shares[size] = masks.float().mean().item()
    assert 0.02 < shares[224] < 0.5
    assert math.isclose(shares[64], shares[224], rel_tol=0.25)


def test_confetti_is_reproducible_with_a_generator():
    images = torch.rand(4, 1, 32, 32, generator=_generator(3))
    first = confetti_noise(images, _generator(4))
    again = confetti_noise(images, _generator(4))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])


def _nominal(n=8, size=16):
    return [Sample(torch.full((3, size, size), 0.5), 0, key=f"n{i}") for i in range(n)]


@pytest.mark.slow
def test_mixer_replaces_about_half_the_samples():
    torch.manual_seed(0)
    mixer = AnomalyMixer(TrainData(_nominal(), confetti=True))
    labels = torch.cat([mixer.mix(torch.full((32, 3, 16, 16), 0.5))[1] for _ in range(50)])
    # 1600 Bernoulli(0.5) draws: 4 standard deviations either side.
    assert abs(labels.mean().item() - 0.5) < 4 * math.sqrt(0.25 / len(labels))


def test_mixer_masks_follow_the_source():
    torch.manual_seed(0)
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[:4, :4] = True
    defect = Sample(torch.ones(3, 8, 8), 1, mask, key="d", category="hole")
    oe_image = Sample(torch.zeros(3, 8, 8), 1, key="oe")
    batch = torch.full((64, 3, 16, 16), 0.5)

    images, labels, masks = AnomalyMixer(TrainData(_nominal(), anomalies=[defect])).mix(batch)
    replaced = labels == 1
    assert replaced.any() and (~replaced).any()
    expected = torch.zeros(16, 16)
    expected[:8, :8] = 1  # the 8×8 mask's quarter, upsampled to 16×16
    assert all(torch.equal(m, expected) for m in masks[replaced])
    assert (masks[~replaced] == 0).all() and torch.equal(images[~replaced], batch[~replaced])
    assert (images[replaced] == 1).all()

    _, labels, masks = AnomalyMixer(TrainData(_nominal(), anomalies=[oe_image])).mix(batch)
    assert (masks[labels == 1] == 1).all() and (masks[labels == 0] == 0).all()

    images, labels, masks = AnomalyMixer(TrainData(_nominal(), confetti=True)).mix(batch)
    assert (masks[labels == 1] == 1).all()
    images, labels, masks = AnomalyMixer(TrainData(_nominal(), confetti=True, confetti_masks=True)).mix(batch)
    change = (images - batch).abs().amax(1) >= CONFETTI_MASK_MIN_CHANGE
    assert torch.equal(masks.bool(), change) and (masks[labels == 0] == 0).all()


def test_mixer_without_anomalies_leaves_the_batch_alone():
    batch = torch.rand(8, 3, 16, 16)
    images, labels, masks = AnomalyMixer(TrainData(_nominal())).mix(batch)
    assert torch.equal(images, batch) and not labels.any() and not masks.any()


def test_outlier_exposure_limit_is_a_fixed_subset_per_seed():
    pool = [Sample(torch.zeros(1, 2, 2), 1, key=f"oe{i}") for i in range(100)]
    picked = limit_outlier_exposure(pool, 8, seed=0)
    assert len(picked) == 8 and len({s.key for s in picked}) == 8
    assert [s.key for s in picked] == [s.key for s in limit_outlier_exposure(pool, 8, seed=0)]
    assert [s.key for s in picked] != [s.key for s in limit_outlier_exposure(pool, 8, seed=1)]
    assert limit_outlier_exposure(pool, None, seed=0) is pool
    assert limit_outlier_exposure(pool, 500, seed=0) is pool
