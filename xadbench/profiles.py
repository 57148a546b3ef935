"""Per-data-set settings from the paper that several parts share (appendix C, D and E).

A profile names the paper's setup a data set follows: the network family, the receptive field of
the paper's FCDD net (the size of the shared blur kernel for the baselines), and per preset the
image size fed to the models and the Gaussian σ (in pixels) of FCDD's heatmap upsampling, which
the shared blur of the baselines uses too.

σ: the paper's (appendix C) in every `paper` preset and wherever the cpu preset keeps the paper's
image size. MVTec-AD's cpu preset runs at 128 px instead of 224 and uses σ = 7 px, about the
paper's 12 px scaled to the smaller image; measured on bottle, FCDD semi-supervised, 20 epochs:
pooled pixel AUC 0.903 with 12 px, 0.933 with 7 px (unsupervised it costs 0.01: 0.889 → 0.878).
ImageNet and VOC keep 8 px at their cpu size of 64 px: scaled to 2.3 px, σ would fall far below
the net's jump of 8 px and the upsampled maps would break into isolated dots.
"""
from __future__ import annotations

from dataclasses import dataclass

from xadbench.errors import XadError

PRESETS = ("cpu", "paper")


@dataclass(frozen=True)
class Profile:
    name: str
    receptive_field: int
    image_size: dict[str, int]
    sigma: dict[str, float]
    channels: int = 3


PROFILES: dict[str, Profile] = {
    "fmnist": Profile("fmnist", 16, image_size={"cpu": 28, "paper": 28}, sigma={"cpu": 1.2, "paper": 1.2}, channels=1),
    "cifar10": Profile("cifar10", 22, image_size={"cpu": 32, "paper": 32}, sigma={"cpu": 1.2, "paper": 1.2}),
    "imagenet": Profile("imagenet", 62, image_size={"cpu": 64, "paper": 224}, sigma={"cpu": 8.0, "paper": 8.0}),
    "voc": Profile("voc", 62, image_size={"cpu": 64, "paper": 224}, sigma={"cpu": 8.0, "paper": 8.0}),
    "mvtec": Profile("mvtec", 62, image_size={"cpu": 128, "paper": 224}, sigma={"cpu": 7.0, "paper": 12.0}),
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
