"""Training augmentation (xadbench.training.augment, torchvision transforms.v2): milliseconds per
batch with one random draw per batch (what training uses) against one draw per image (the same
pipeline called image by image), for each profile's batch shape of the cpu preset.

    python bench/augment.py
"""
from __future__ import annotations

import time

import torch
from torchvision import tv_tensors

from xadbench.provenance import cpu_model
from xadbench.training import augment, augmentation

#: profile -> (batch, channels, size): the cpu presets' FCDD batch sizes and image sizes.
SHAPES = {"mvtec": (16, 3, 128), "cifar10": (128, 3, 32), "fmnist": (128, 1, 28), "imagenet": (32, 3, 64)}
REPEATS = 20


def per_image(images: torch.Tensor, masks: torch.Tensor, profile: str) -> None:
    transform = augmentation(profile, tuple(images.shape[-2:]))
    for image, mask in zip(images, masks):
        transform(tv_tensors.Image(image), tv_tensors.Mask(mask))


def milliseconds(fn, *args) -> float:
    fn(*args)  # warm-up
    start = time.perf_counter()
    for _ in range(REPEATS):
        fn(*args)
    return (time.perf_counter() - start) / REPEATS * 1000


def main() -> None:
    torch.manual_seed(0)
    print(f"CPU: {cpu_model()}, torch threads: {torch.get_num_threads()}")
    print(f"{'profile':<9} {'batch':>13} {'per batch ms':>13} {'per image ms':>13} {'ratio':>7}")
    for profile, (batch, channels, size) in SHAPES.items():
        images = torch.rand(batch, channels, size, size)
        masks = (torch.rand(batch, size, size) > 0.9).float()
        batched = milliseconds(augment, images, masks, profile, torch.Generator().manual_seed(0))
        single = milliseconds(per_image, images, masks, profile)
        print(f"{profile:<9} {f'{batch}x{channels}x{size}x{size}':>13} {batched:>13.1f} {single:>13.1f} {single / batched:>6.1f}x")


if __name__ == "__main__":
    main()
