"""The data-set families of the FCDD paper (Liznerski et al., ICLR 2021), one record each.

A profile holds everything the code needs to know about a family of data sets: the network
family of appendix D and its receptive field (the size of the shared blur kernel for the
baselines, section 4), per preset the input image size and the Gaussian σ of FCDD's heatmap
upsampling (Algorithm 1, appendix B/C; the baselines' shared blur uses it too), the training
augmentation of appendix E, the heatmap display defaults of appendix C, and the training
schedule of appendix E (`paper`) with its compressed CPU version (`cpu`). Method presets start
from the profile's schedule and override it where the method trains differently. Adding a family
means adding one record here.

σ and image size: the paper's in every `paper` preset and wherever the cpu preset keeps the
paper's image size. MVTec-AD's cpu preset runs at 128 px instead of 224 and uses σ = 7 px, about
the paper's 12 px scaled to the smaller image. ImageNet and VOC keep 8 px at their cpu size of
64 px: scaled, σ would fall far below the VGG net's jump of 8 px and the upsampled maps would
break into isolated dots. docs/results.md holds the runs behind these choices.

MVTec-AD's profile serves every industrial defect set (VisA, MVTec AD 2, BTAD, MPDD, a folder
with masks): the paper has no setup for them, and papers that report them beside MVTec-AD use
MVTec-AD's (the same image size and network); a data set names its profile in its `profile`
attribute, so a new record here is all a set with a setup of its own needs.

This module imports nothing heavy (no torch), so the command line can read it at once.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from xadbench.errors import XadError

PRESETS = ("cpu", "paper")
#: The networks of appendix D: the 28 px (Fashion-MNIST) net, the 32 px (CIFAR-10) net, and
#: VGG11-BN features for 224 px images (ImageNet, Pascal VOC, MVTec-AD).
NETWORKS = ("fmnist", "cifar10", "vgg")


@dataclass(frozen=True)
class Schedule:
    """One training setup (appendix E): the keywords of `xadbench.training.fit_loop`."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    passes_per_epoch: int = 1

    def params(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Augmentation:
    """Appendix E's training pre-processing as data; `xadbench.training.augment` applies the
    steps in this order: colour jitter (`jitter_first`), random crop after zero padding by `pad`
    or upscaling by `resize` (`crop`), colour jitter (otherwise), horizontal flip with chance 0.5
    (`flip`), additive Gaussian noise of std `noise` with chance `noise_chance`.

    jitter: brightness/contrast/saturation strengths; one is picked at random per batch (the
        paper's "either 0.04 or 0.0005" for MVTec-AD); empty: no jitter.
    """

    crop: bool = False
    pad: int = 0
    resize: float = 1.0
    jitter: tuple[float, ...] = ()
    jitter_first: bool = True
    flip: bool = False
    noise: float = 0.0
    noise_chance: float = 1.0


@dataclass(frozen=True)
class Profile:
    """A data-set family; see the module docstring.

    network: which appendix-D network FCDD (and the baselines' conv stacks) use, one of NETWORKS.
    receptive_field: that network's receptive field in pixels (appendix D).
    image_size, sigma: per preset, the input size and the upsampling σ in pixels.
    augmentation: appendix E's training pre-processing.
    display: (reference set, η) of appendix C's heatmap normalisation for figures.
    training: per preset, the training schedule (paper: appendix E; cpu: a few CPU minutes).
    folder_side: a folder-per-class data set whose largest image side is at most this (and grey,
        when `folder_grey`) follows this profile; None: never chosen by image size.
    """

    name: str
    network: str
    receptive_field: int
    image_size: dict[str, int]
    sigma: dict[str, float]
    augmentation: Augmentation
    display: tuple[str, float]
    training: dict[str, Schedule]
    channels: int = 3
    folder_side: int | None = None
    folder_grey: bool = False


#: Appendix E: CIFAR-10's setup, which ImageNet and Pascal VOC share.
_CIFAR_PAPER = Schedule(epochs=600, batch_size=200, optimizer="adam", lr=1e-3, weight_decay=1e-6,
                        schedule="milestones:400,500")
#: CPU: the 64 px ImageNet-like images with the pretrained VGG net, a compressed milestone schedule.
_IMAGENET_CPU = Schedule(epochs=12, batch_size=32, optimizer="adam", lr=1e-4, weight_decay=1e-6,
                         schedule="milestones:8,10")

PROFILES: dict[str, Profile] = {
    "fmnist": Profile(
        "fmnist", "fmnist", 16, image_size={"cpu": 28, "paper": 28}, sigma={"cpu": 1.2, "paper": 1.2},
        augmentation=Augmentation(crop=True, pad=2, flip=True),
        display=("global", 0.85),
        training={"paper": Schedule(400, 128, "sgd", 1e-2, 1e-6, "exponential:0.98"),
                  "cpu": Schedule(20, 128, "sgd", 1e-2, 1e-6, "exponential:0.9")},
        channels=1, folder_side=28, folder_grey=True),
    "cifar10": Profile(
        "cifar10", "cifar10", 22, image_size={"cpu": 32, "paper": 32}, sigma={"cpu": 1.2, "paper": 1.2},
        augmentation=Augmentation(crop=True, pad=4, jitter=(0.01,), flip=True, noise=0.001),
        display=("local", 0.85),
        training={"paper": _CIFAR_PAPER, "cpu": Schedule(20, 128, "adam", 1e-3, 1e-6, "milestones:14,17")},
        folder_side=32),
    "imagenet": Profile(
        "imagenet", "vgg", 62, image_size={"cpu": 64, "paper": 224}, sigma={"cpu": 8.0, "paper": 8.0},
        augmentation=Augmentation(crop=True, resize=256 / 224, jitter=(0.01,), flip=True, noise=0.001),
        display=("global", 0.97),
        training={"paper": _CIFAR_PAPER, "cpu": _IMAGENET_CPU}),
    # As CIFAR-10 without the crop (it would cut the Clever Hans watermark in the lower left corner).
    "voc": Profile(
        "voc", "vgg", 62, image_size={"cpu": 64, "paper": 224}, sigma={"cpu": 8.0, "paper": 8.0},
        augmentation=Augmentation(jitter=(0.01,), flip=True, noise=0.001),
        display=("global", 0.99),
        training={"paper": _CIFAR_PAPER, "cpu": _IMAGENET_CPU}),
    # CPU: the pretrained VGG net at 128 px sees about 4,200 training images instead of the
    # paper's 418,000, so fewer, smaller steps with a 10x learning rate.
    "mvtec": Profile(
        "mvtec", "vgg", 62, image_size={"cpu": 128, "paper": 224}, sigma={"cpu": 7.0, "paper": 12.0},
        augmentation=Augmentation(crop=True, resize=240 / 224, jitter=(0.04, 0.0005), jitter_first=False,
                                  noise=0.001, noise_chance=0.5),
        display=("local", 0.97),
        training={"paper": Schedule(200, 128, "sgd", 1e-3, 1e-4, "exponential:0.985", passes_per_epoch=10),
                  "cpu": Schedule(20, 16, "sgd", 1e-2, 1e-4, "exponential:0.9")}),
}
#: The profile of a folder tree whose images fit no profile's `folder_side`.
FOLDER_FALLBACK = "imagenet"


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise XadError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}") from None


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise XadError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return preset


def training_params(profile: str, preset: str) -> dict[str, object]:
    """The profile's training schedule for a preset as `fit_loop` keywords."""
    return get_profile(profile).training[check_preset(preset)].params()


def profile_for_images(side: int, grey: bool) -> str:
    """The profile of a folder-per-class data set whose largest image side is `side` pixels: the
    smallest `folder_side` that fits (grey images only where the profile asks for them)."""
    fitting = [p for p in PROFILES.values()
               if p.folder_side is not None and side <= p.folder_side and (grey or not p.folder_grey)]
    return min(fitting, key=lambda p: p.folder_side).name if fitting else FOLDER_FALLBACK
