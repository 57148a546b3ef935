"""Anomalies used in training, shared by every method that can learn from them.

- Confetti noise (paper section 4.2, figure 7): blurred, rotated squares of colour or grey added
  to a nominal image, the synthetic anomaly for MVTec-AD.
- Known anomalies: Outlier Exposure images (Hendrycks et al., 2019) or a few real labelled defects.
- Online replacement (paper appendix E): each nominal sample of a batch is replaced by an anomaly
  with probability 0.5, so batches are about balanced.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from xadbench.heatmaps import gaussian_kernel
from xadbench.types import Sample, TrainData

# Confetti at the reference resolution (224-240 px); scaled with the image size.
CONFETTI_REFERENCE_SIZE = 224
CONFETTI_SIDE_RANGE = (8, 54)
CONFETTI_MAX_BLOBS = 6
CONFETTI_BLUR_SIGMA = 5.0
CONFETTI_GREY_SHARE = 0.5
CONFETTI_AMPLITUDE_RANGE = (0.3, 1.0)
#: A pixel belongs to a confetti mask when some channel changed by at least this much (≈13/255).
CONFETTI_MASK_MIN_CHANGE = 0.05
CONFETTI_RETRIES = 10


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) with a normalised kernel of about ±3σ, same size out."""
    size = min(2 * math.ceil(3 * sigma) + 1, 2 * min(x.shape[-2:]) - 1)
    kernel = gaussian_kernel(size, sigma, normalise=True).to(x)
    channels = x.shape[1]
    weight = kernel.expand(channels, 1, size, size)
    pad = size // 2
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    return F.conv2d(padded, weight, groups=channels)


def _confetti_blobs(n: int, channels: int, height: int, width: int, generator: torch.Generator | None) -> torch.Tensor:
    """Blurred additive noise (n, C, H, W): 1..CONFETTI_MAX_BLOBS rotated squares per image."""
    scale = min(height, width) / CONFETTI_REFERENCE_SIZE

    def uniform(size, low=0.0, high=1.0):
        return torch.rand(size, generator=generator) * (high - low) + low

    ys = torch.arange(height, dtype=torch.float32).view(height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, width)
    noise = torch.zeros(n, channels, height, width)
    for i in range(n):
        blobs = int(torch.randint(1, CONFETTI_MAX_BLOBS + 1, (1,), generator=generator))
        for _ in range(blobs):
            half = 0.5 * float(uniform(1, *CONFETTI_SIDE_RANGE)) * scale
            cy, cx = float(uniform(1, 0, height)), float(uniform(1, 0, width))
            angle = float(uniform(1, 0, math.pi / 2))
            cos, sin = math.cos(angle), math.sin(angle)
            u = (xs - cx) * cos + (ys - cy) * sin
            v = -(xs - cx) * sin + (ys - cy) * cos
            inside = (u.abs() <= half) & (v.abs() <= half)
            # Values uniform in [-1, 1] per channel (grey: one for all) times an amplitude: many
            # blobs are faint, and faint ones teach the subtle defects of real data (the
            # comparison is in docs/results.md).
            value = uniform(1, -1, 1).expand(channels) if float(uniform(1)) < CONFETTI_GREY_SHARE else uniform(channels, -1, 1)
            value = value * float(uniform(1, *CONFETTI_AMPLITUDE_RANGE))
            noise[i][:, inside] = value.view(channels, 1)
    return _blur(noise, CONFETTI_BLUR_SIGMA * scale)


def confetti_noise(images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Add confetti noise to every image of a batch.

    images: (N, C, H, W) in [0, 1]. Returns the noisy images, clamped to [0, 1], and bool masks
    (N, H, W) of the changed pixels: those where some channel moved by at least
    CONFETTI_MASK_MIN_CHANGE after blurring and clamping (a blob pushing a black pixel darker
    changes nothing and is not in the mask). Each image gets 1..CONFETTI_MAX_BLOBS squares with
    sides uniform in CONFETTI_SIDE_RANGE (scaled from 224 px), random rotation, a grey or
    coloured additive value of either sign scaled by an amplitude in CONFETTI_AMPLITUDE_RANGE; an
    image the noise left unchanged (faint blobs, or blobs lost to clamping) gets new blobs, up to
    CONFETTI_RETRIES times, so that an image labelled anomalous shows its anomaly.
    """
    n, channels, height, width = images.shape
    noisy = images.clone()
    masks = torch.zeros(n, height, width, dtype=torch.bool, device=images.device)
    pending = torch.arange(n)
    for _ in range(CONFETTI_RETRIES + 1):
        noise = _confetti_blobs(len(pending), channels, height, width, generator).to(images)
        rows = pending.to(images.device)
        candidate = (images[rows] + noise).clamp(0, 1)
        changed = (candidate - images[rows]).abs().amax(1) >= CONFETTI_MASK_MIN_CHANGE
        noisy[rows], masks[rows] = candidate, changed
        pending = pending[~changed.flatten(1).any(1).cpu()]
        if len(pending) == 0:
            break
    return noisy, masks


def limit_outlier_exposure(anomalies: Sequence[Sample], limit: int | None, seed: int) -> list[Sample] | Sequence[Sample]:
    """A fixed random subset of `limit` OE samples (the paper's 2, 8, 128, 2048), or all."""
    if limit is None or limit >= len(anomalies):
        return anomalies
    order = torch.randperm(len(anomalies), generator=torch.Generator().manual_seed(seed))
    return [anomalies[int(i)] for i in order[:limit]]


def _match(image: torch.Tensor, channels: int, size: tuple[int, int]) -> torch.Tensor:
    """Bring an anomaly image to the nominal images' channels and size."""
    if image.shape[0] != channels:
        image = image.mean(0, keepdim=True) if channels == 1 else image.expand(channels, -1, -1)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    return image


class AnomalyMixer:
    """Online replacement of nominal training samples by anomalies (paper appendix E).

    Sources are the known anomalies of `train` (OE images or real defects) and, when
    `train.confetti`, confetti noise on the nominal image itself; a replaced sample picks a
    source uniformly. Masks for the pixel-wise loss (paper eq. 3): a real anomaly's mask where it
    has one; confetti's own mask when `train.confetti_masks`; otherwise the whole image is
    anomalous, as in the reference implementation. Every random draw comes from `generator`
    (a CPU generator; None: torch's global one).
    """

    def __init__(self, train: TrainData, p: float = 0.5, generator: torch.Generator | None = None):
        self.anomalies = train.anomalies
        self.confetti = train.confetti
        self.confetti_masks = train.confetti_masks
        self.p = p
        self.generator = generator

    @property
    def active(self) -> bool:
        return len(self.anomalies) > 0 or self.confetti

    def mix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) nominal → (images, labels (B,) float, masks (B, H, W) float)."""
        batch, channels, height, width = images.shape
        device = images.device
        labels = torch.zeros(batch, device=device)
        masks = torch.zeros(batch, height, width, device=device)
        if not self.active:
            return images, labels, masks
        replace = torch.nonzero(torch.rand(batch, generator=self.generator) < self.p).flatten().tolist()
        if not replace:
            return images, labels, masks
        images = images.clone()
        sources = (["known"] if len(self.anomalies) else []) + (["confetti"] if self.confetti else [])
        picks = torch.randint(len(sources), (len(replace),), generator=self.generator).tolist()
        confetti_rows = [row for row, pick in zip(replace, picks) if sources[pick] == "confetti"]
        known_rows = [row for row, pick in zip(replace, picks) if sources[pick] == "known"]
        if confetti_rows:
            noisy, confetti_mask = confetti_noise(images[confetti_rows], self.generator)
            images[confetti_rows] = noisy
            masks[confetti_rows] = confetti_mask.float() if self.confetti_masks else 1.0
        for row in known_rows:
            sample = self.anomalies[int(torch.randint(len(self.anomalies), (1,), generator=self.generator))]
            images[row] = _match(sample.image, channels, (height, width)).to(device)
            if sample.mask is None:
                masks[row] = 1.0
            else:
                resized = F.interpolate(sample.mask[None, None].float(), size=(height, width), mode="nearest")
                masks[row] = resized[0, 0].to(device)
        labels[replace] = 1.0
        return images, labels, masks
