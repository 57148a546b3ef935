"""Per-data-set settings from the paper that several parts share (appendix C, D and E).

A profile names the paper's setup a data set follows: the network family, the Gaussian σ of FCDD's
heatmap upsampling, the receptive field of the paper's FCDD net (the size of the shared blur kernel
for the baselines), and the image size each preset feeds the models.

σ is the paper's value at the paper's image size (appendix C: 12 px on 224 px MVTec-AD images);
at another size it scales with the image (`sigma_at`), so that the Gaussian covers the same share
of the object: 6.9 px at the cpu preset's 128 px. Measured on MVTec-AD bottle, FCDD
semi-supervised, 20 epochs at 128 px: pooled pixel AUC 0.903 with σ = 12 px, 0.933 with 7 px.
"""
from __future__ import annotations

from dataclasses import dataclass

from xadbench.errors import XadError

PRESETS = ("cpu", "paper")


@dataclass(frozen=True)
class Profile:
    name: str
    sigma: float
    receptive_field: int
    image_size: dict[str, int]
    channels: int = 3

    def sigma_at(self, size: int, sigma: float | None = None) -> float:
        """σ in pixels for images whose shorter side is `size` px: `sigma` (default: the paper's),
        given at the paper's image size, scaled by size / the paper's image size."""
        return (self.sigma if sigma is None else sigma) * size / self.image_size["paper"]


PROFILES: dict[str, Profile] = {
    "fmnist": Profile("fmnist", sigma=1.2, receptive_field=16, image_size={"cpu": 28, "paper": 28}, channels=1),
    "cifar10": Profile("cifar10", sigma=1.2, receptive_field=22, image_size={"cpu": 32, "paper": 32}),
    "imagenet": Profile("imagenet", sigma=8.0, receptive_field=62, image_size={"cpu": 64, "paper": 224}),
    "voc": Profile("voc", sigma=8.0, receptive_field=62, image_size={"cpu": 64, "paper": 224}),
    "mvtec": Profile("mvtec", sigma=12.0, receptive_field=62, image_size={"cpu": 128, "paper": 224}),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise XadError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise XadError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return preset
