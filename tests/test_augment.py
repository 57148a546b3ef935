"""The training augmentation (xadbench.training.augment, torchvision transforms.v2): masks follow
the crops, resizes and flips of their images; colour jitter and noise leave masks alone; the draws
depend on the generator alone and leave torch's global state untouched."""
from __future__ import annotations

import pytest
import torch

from xadbench.errors import XadError
from xadbench.training import augment

PROFILES = ("fmnist", "cifar10", "imagenet", "voc", "mvtec")
RESIZING = ("imagenet", "mvtec")  # upscale, then crop


def blocky_batch(channels: int, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of random 8x8-pixel blocks, and images that show them (0.8 on the mask, 0.2 off it),
    so the mask can be read back from an augmented image."""
    blocks = (torch.rand(4, 1, size // 8, size // 8) > 0.5).float()
    masks = torch.nn.functional.interpolate(blocks, scale_factor=8, mode="nearest")[:, 0]
    images = (0.2 + 0.6 * masks)[:, None].expand(-1, channels, -1, -1).contiguous()
    return images, masks


@pytest.mark.parametrize("profile", PROFILES)
def test_masks_follow_their_images(profile):
    torch.manual_seed(0)
    images, masks = blocky_batch(1 if profile == "fmnist" else 3)
    generator = torch.Generator().manual_seed(0)
    moved = False
    for _ in range(8):
        out_images, out_masks = augment(images, masks, profile, generator)
        assert out_images.shape == images.shape and out_masks.shape == masks.shape
        assert set(out_masks.unique().tolist()) <= {0.0, 1.0}  # nearest-neighbour, never blended
        shown = out_images.mean(dim=1) > 0.5
        if profile in RESIZING:
            # Upscaled images are interpolated bilinearly, masks by (torchvision's legacy) nearest
            # neighbour, half a source pixel apart: they differ on block edges only.
            assert (shown != out_masks.bool()).float().mean() < 0.1
        else:  # pads, crops and flips move both exactly alike
            assert torch.equal(shown, out_masks.bool())
        moved |= not torch.equal(out_masks, masks)
    assert moved  # every profile crops or flips


def test_draws_depend_on_the_generator_alone():
    images, masks = blocky_batch(3)
    runs = []
    for seed, global_seed in ((0, 0), (0, 5), (1, 0)):
        torch.manual_seed(global_seed)
        before = torch.get_rng_state()
        generator = torch.Generator().manual_seed(seed)
        runs.append([augment(images, masks, "mvtec", generator) for _ in range(4)])
        assert torch.equal(torch.get_rng_state(), before)  # the caller's global state is untouched
    same = all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(runs[0], runs[1]))
    other = all(torch.equal(a[0], b[0]) for a, b in zip(runs[0], runs[2]))
    assert same and not other


def test_unknown_profile_is_an_error():
    images, masks = blocky_batch(3)
    with pytest.raises(XadError, match="unknown profile 'svhn'"):
        augment(images, masks, "svhn", torch.Generator())
