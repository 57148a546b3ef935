"""FCDD's torch model (Liznerski et al., "Explainable Deep One-Class Classification", ICLR 2021):
the networks of appendix D and appendix A, the pseudo-Huber heatmap of section 3 and the
receptive-field upsampling of Algorithm 1. A plain `nn.Module` and functions; training and the
estimator are `methods.fcdd`.

A fully convolutional network φ maps an image to a u×v matrix; A = sqrt(φ² + 1) − 1
(`pseudo_huber`) is a low-resolution anomaly heatmap whose mean is the anomaly score;
`receptive_upsample` brings it to the input's resolution with a strided transposed convolution
by a fixed Gaussian kernel, each Gaussian centred on its output pixel's receptive field.
Networks: `fmnist_net`, `cifar10_net`, `vgg_net` (appendix D) and their narrow CPU variants,
`kernel_net` (appendix A's nets of growing receptive field), `build_net` choosing one per data
set profile.
"""
from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from xadbench.backbones import (
    CIFAR10_WIDTHS,
    FMNIST_WIDTH,
    FROZEN_LAYERS,
    SMALL_CIFAR10_WIDTHS,
    SMALL_FMNIST_WIDTH,
    IMAGENET_MEAN,
    IMAGENET_STD,
    freeze,
    vgg11_bn_features,
    vgg_features,
    warn_random_init,
)
from xadbench.errors import XadError
from xadbench.heatmaps import gaussian_kernel
from xadbench.layers import Standardise
from xadbench.profiles import get_profile
from xadbench.receptive_field import ReceptiveField

#: The narrow CPU variant of the VGG net (a quarter of VGG11's widths, the same receptive field).
SMALL_VGG_LAYOUT = (16, "M", 32, "M", 64, 64, "M", 128, 128)
#: VGG11-BN features[:21]: up to the second 512-conv and its ReLU (appendix D), before the 4th pool.
FCDD_VGG_LAYERS = 21


# --------------------------------------------------------------------------------------------
# Networks (appendix D)


def pseudo_huber(phi: torch.Tensor) -> torch.Tensor:
    """sqrt(φ² + 1) − 1 element-wise (section 3): ≈ φ²/2 near 0, ≈ |φ| far away; ≥ 0."""
    return torch.sqrt(phi * phi + 1) - 1


class FCDDNet(nn.Module):
    """norm → body; `forward` returns φ(x) of shape (B, 1, u, v). The hypersphere centre c of
    eq. 1 is the bias of the body's last 1×1 conv (section 3), so there is no separate centre."""

    def __init__(self, body: nn.Sequential, channels: int, mean=None, std=None):
        super().__init__()
        # No statistics: placeholders that a loaded state dict overwrites.
        self.norm = Standardise([0.0] * channels if mean is None else mean, [1.0] * channels if std is None else std)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.norm(x))

    def heatmap(self, x: torch.Tensor) -> torch.Tensor:
        """The low-resolution anomaly heatmap A(x) = sqrt(φ(x)² + 1) − 1, shape (B, u, v)."""
        return pseudo_huber(self(x)[:, 0])


def fmnist_net(in_channels: int = 1, width: int = FMNIST_WIDTH) -> nn.Sequential:
    """Appendix D's Fashion-MNIST net: conv5 (p2) BN LeakyReLU pool2, conv5 (p2) pool2, conv1 → 1.
    28×28 in, 7×7 out, receptive field 16; 413,441 parameters at width 128 and 1 channel."""
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, width, 5, padding=2),
        bn1=nn.BatchNorm2d(width),
        act1=nn.LeakyReLU(),
        pool1=nn.MaxPool2d(2, 2),
        conv2=nn.Conv2d(width, width, 5, padding=2),
        pool2=nn.MaxPool2d(2, 2),
        head=nn.Conv2d(width, 1, 1),
    ))


def cifar10_net(in_channels: int = 3, widths: Sequence[int] = CIFAR10_WIDTHS) -> nn.Sequential:
    """Appendix D's CIFAR-10 net: conv3 BN LReLU pool2, conv3 BN LReLU, conv3 BN LReLU pool2,
    conv3, conv1 → 1 (3×3 convs padded by 1). 32×32 in, 8×8 out, receptive field 22;
    1,185,281 parameters at widths (128, 256, 128) and 3 channels."""
    a, b, c = widths
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(in_channels, a, 3, padding=1), bn1=nn.BatchNorm2d(a), act1=nn.LeakyReLU(),
        pool1=nn.MaxPool2d(2, 2),
        conv2=nn.Conv2d(a, b, 3, padding=1), bn2=nn.BatchNorm2d(b), act2=nn.LeakyReLU(),
        conv3=nn.Conv2d(b, b, 3, padding=1), bn3=nn.BatchNorm2d(b), act3=nn.LeakyReLU(),
        pool2=nn.MaxPool2d(2, 2),
        conv4=nn.Conv2d(b, c, 3, padding=1),
        head=nn.Conv2d(c, 1, 1),
    ))


def vgg_net(features: nn.Sequential) -> nn.Sequential:
    """Appendix D's ImageNet / MVTec-AD / VOC net: VGG11-BN `features[:21]` (64 M 128 M 256 256 M
    512 512, each conv with BN and ReLU) and a 1×1 conv → 1. `features[:15]` (the ten layers
    before the 512-convs) are frozen, batch-norm statistics included (`backbones.Frozen`); the
    two 512-convs with their BN and the 1×1 conv are trained. 224×224 in, 28×28 out, receptive
    field 62; 4,504,833 parameters. Works with a narrower VGG layout of the same shape too."""
    trained = features[FROZEN_LAYERS:FCDD_VGG_LAYERS]
    last = [m for m in trained if isinstance(m, nn.Conv2d)][-1]
    return nn.Sequential(OrderedDict(
        frozen=freeze(features[:FROZEN_LAYERS]),
        trained=trained,
        head=nn.Conv2d(last.out_channels, 1, 1),
    ))


#: Widths of appendix A's MVTec-AD nets (five k×k convs) and of their narrow CPU variant (an
#: eighth); the paper gives the layer counts and receptive fields, not the widths.
KERNEL_NET_WIDTHS = (64, 128, 256, 256, 128)
SMALL_KERNEL_NET_WIDTHS = (8, 16, 32, 32, 16)


def check_kernel(kernel: int) -> None:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel={kernel}: the receptive-field nets take an odd kernel size, e.g. 3, 5, ..., 13")


def kernel_net(network: str, in_channels: int, kernel: int, narrow: bool = False) -> nn.Sequential:
    """Appendix A's nets of growing receptive field, trained from scratch (k odd; convs padded
    by (k − 1)/2 keep the size, so the pools alone set the output size):

    cifar10 (32 px, Table 3): the 32 px net of appendix D with a k×k first conv and one conv
    fewer, four convs and two max pools: conv k BN LReLU pool2, conv3 BN LReLU pool2, conv3,
    conv1 → 1; receptive field k + 15 (18 … 32 for k = 3 … 17).
    vgg (224 px, MVTec-AD, Table 4): six convs and three max pools, every conv but the head k×k:
    conv BN LReLU pool, conv BN LReLU pool, conv BN LReLU, conv BN LReLU pool, conv, conv1 → 1,
    pools 3×3 stride 2 padding 1; receptive field 19·(k − 1) + 15 (53 … 243 for k = 3 … 13),
    224 px in, 28×28 out. Widths KERNEL_NET_WIDTHS (narrow: SMALL_KERNEL_NET_WIDTHS).
    """
    check_kernel(kernel)
    pad = (kernel - 1) // 2
    if network == "cifar10":
        a, b, c = SMALL_CIFAR10_WIDTHS if narrow else CIFAR10_WIDTHS
        return nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(in_channels, a, kernel, padding=pad), bn1=nn.BatchNorm2d(a), act1=nn.LeakyReLU(),
            pool1=nn.MaxPool2d(2, 2),
            conv2=nn.Conv2d(a, b, 3, padding=1), bn2=nn.BatchNorm2d(b), act2=nn.LeakyReLU(),
            pool2=nn.MaxPool2d(2, 2),
            conv3=nn.Conv2d(b, c, 3, padding=1),
            head=nn.Conv2d(c, 1, 1),
        ))
    if network != "vgg":
        raise XadError(f"kernel={kernel}: the receptive-field nets exist for the 32 px (cifar10) and 224 px "
                       f"(MVTec-AD, ImageNet, VOC) profiles, not for the {network} network")
    w1, w2, w3, w4, w5 = SMALL_KERNEL_NET_WIDTHS if narrow else KERNEL_NET_WIDTHS
    layers: list[tuple[str, nn.Module]] = []
    for i, (cin, cout) in enumerate(((in_channels, w1), (w1, w2), (w2, w3), (w3, w4)), start=1):
        layers += [(f"conv{i}", nn.Conv2d(cin, cout, kernel, padding=pad)), (f"bn{i}", nn.BatchNorm2d(cout)),
                   (f"act{i}", nn.LeakyReLU())]
        if i != 3:
            layers.append((f"pool{i}", nn.MaxPool2d(3, 2, 1)))
    layers += [("conv5", nn.Conv2d(w4, w5, kernel, padding=pad)), ("head", nn.Conv2d(w5, 1, 1))]
    return nn.Sequential(OrderedDict(layers))


def is_narrow(profile: str, small: bool, pretrained: bool, kernel: int | None = None) -> bool:
    """Whether `build_net` gives the narrow variant: the nets trained from scratch (28/32 px,
    appendix A's) whenever small, the VGG net only without pretrained weights (they fix its
    widths)."""
    return small and (get_profile(profile).network != "vgg" or kernel is not None or not pretrained)


def build_net(profile: str, channels: int, *, small: bool = False, pretrained: bool = True,
              weights: str | None = None, mean=None, std=None, kernel: int | None = None) -> tuple[FCDDNet, str]:
    """The FCDD net for a data set profile and the id of its initial weights.

    fmnist → `fmnist_net`, cifar10 → `cifar10_net` (random init, `mean`/`std` normalise the
    input; small: narrow widths); any other profile → `vgg_net` on VGG11-BN with ImageNet
    normalisation, weights per `backbones.vgg11_bn_features`. small with pretrained=False uses
    the narrow VGG layout SMALL_VGG_LAYOUT (a quarter of the widths, the same receptive field);
    pretrained weights fix the widths, so small has no effect then. A `kernel` gives appendix
    A's net of that kernel size for the profile's network instead (`kernel_net`, random init,
    normalised by `mean`/`std`).
    """
    kind = get_profile(profile).network
    narrow = is_narrow(profile, small, pretrained, kernel)
    if kernel is not None:
        return FCDDNet(kernel_net(kind, channels, kernel, narrow), channels, mean, std), "none"
    if kind == "fmnist":
        body = fmnist_net(channels, SMALL_FMNIST_WIDTH if narrow else FMNIST_WIDTH)
        return FCDDNet(body, channels, mean, std), "none"
    if kind == "cifar10":
        body = cifar10_net(channels, SMALL_CIFAR10_WIDTHS if narrow else CIFAR10_WIDTHS)
        return FCDDNet(body, channels, mean, std), "none"
    if channels not in (1, 3):
        raise XadError(f"the VGG-based FCDD net takes 1- or 3-channel images; got {channels} channels")
    if narrow:
        if weights is not None:
            warnings.warn(f"pretrained=False: ignoring weights={weights!r}", UserWarning, stacklevel=2)
        warn_random_init("the narrow VGG-shaped FCDD layers")
        features, weights_id = vgg_features(SMALL_VGG_LAYOUT), "none"
    else:
        features, weights_id = vgg11_bn_features(pretrained=pretrained, weights=weights)
    return FCDDNet(vgg_net(features), 3, IMAGENET_MEAN, IMAGENET_STD), weights_id


# --------------------------------------------------------------------------------------------
# Heatmap upsampling (Algorithm 1)


def receptive_upsample(heatmap: torch.Tensor, field: ReceptiveField, sigma: float,
                       output_size: tuple[int, int]) -> torch.Tensor:
    """Algorithm 1: A′ = Σ over low-res pixels a of a · G(c_a, σ), each Gaussian restricted to
    a's receptive field (kernel size = the field's extent r, as the paper sets it) and centred
    on the field's centre c = (s + u·j, s + v·j).

    One strided transposed convolution (stride = jump j) with the fixed r×r Gaussian places the
    Gaussian of pixel (u, v) with its centre at u·j + (r−1)/2; cropping from (r−1)/2 − s (the
    negative of the first field's start, an integer) moves it to s + u·j, and the crop is exactly
    `output_size`, zero-padded where no field reaches (bottom/right rows a floor-mode pooling
    dropped). Kernel: peak-1 Gaussian exp(−d²/2σ²), not normalised to sum 1, as in the reference
    code; the AUCs only depend on relative values, and the scale of A′ matters only for eq. 3,
    where the reference's scale is kept.

    heatmap: (B, u, v). Returns (B, H, W) for output_size (H, W).
    """
    if heatmap.ndim != 3:
        raise ValueError(f"receptive_upsample wants (B, u, v); got {tuple(heatmap.shape)}")
    kernel = gaussian_kernel(field.extent, sigma, normalise=False).to(heatmap)
    out = F.conv_transpose2d(heatmap[:, None], kernel[None, None], stride=field.jump)[:, 0]
    offset = -field.start
    height, width = output_size
    before = max(0, -offset)
    bottom = max(0, offset + height - out.shape[-2])
    right = max(0, offset + width - out.shape[-1])
    if before or bottom or right:
        out = F.pad(out, (before, right, before, bottom))
    top = offset + before
    return out[:, top : top + height, top : top + width]
