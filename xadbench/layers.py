"""Input standardisation the methods' networks share: statistics of the nominal training images,
applied inside the model so that every method takes images in [0, 1]."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from xadbench.errors import XadError

#: Floor of a channel's standard deviation, so that a constant channel does not divide by zero.
MIN_STD = 1e-3


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation (floored at MIN_STD) of images (N, C, H, W)."""
    images = images.float()
    return images.mean(dim=(0, 2, 3)), images.std(dim=(0, 2, 3)).clamp_min(MIN_STD)


class Standardise(nn.Module):
    """(x − mean) / std per channel, the statistics as buffers; a 1-channel input is repeated to
    the statistics' channels first (greyscale images into an RGB backbone), any other channel
    mismatch is an error. Per pixel, so the receptive-field bookkeeping passes through it."""

    receptive_field_passthrough = True

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1).clone())
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.mean.shape[1]
        if x.shape[1] != channels:
            if x.shape[1] != 1:
                raise XadError(f"the network takes {channels}-channel images; got {x.shape[1]} channels")
            x = x.expand(-1, channels, -1, -1)
        return (x - self.mean) / self.std
