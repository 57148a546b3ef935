"""Per-pixel Gaussian statistics: the classical baseline every deep method must clear."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xadbench.method import EpochCallback, Method
from xadbench.types import Prediction, TrainData, stack_images
from xadbench.validation import Interval


class PixelStats(Method):
    """Per-pixel mean and standard deviation of the nominal training images.

    Anomaly map: the channel-averaged absolute z-score |x − μ| / (σ + eps) of every pixel;
    score: the mean of the map. Sensible for aligned objects and textures with a fixed layout
    (docs/results.md), meaningless for unaligned images. It learns from nominal images only.

    eps: added to σ so constant pixels do not divide by zero.
    """

    supervision = "none"
    reference = True
    deterministic = True
    parameter_constraints = {"eps": Interval(float, 0, closed="neither")}

    def __init__(self, eps: float = 1e-2):
        self.eps = eps

    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "PixelStats":
        images = stack_images(train.nominal).double()
        self.mean_ = images.mean(0)
        self.std_ = images.std(0, unbiased=False)
        if on_epoch is not None:
            on_epoch(1, 1, 0.0)
        return self

    def checkpoint(self) -> dict[str, Any]:
        """Hyperparameters and the per-pixel statistics."""
        self._check_fitted("mean_")
        return {"params": self.get_params(), "mean": self.mean_, "std": self.std_}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "PixelStats":
        model = cls(**state["params"])
        model.mean_, model.std_ = state["mean"], state["std"]
        return model

    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_fitted("mean_")
        if images.shape[1:] != self.mean_.shape:
            raise ValueError(f"PixelStats was fitted on images {tuple(self.mean_.shape)}, got {tuple(images.shape[1:])}")
        z = ((images.double() - self.mean_).abs() / (self.std_ + self.eps)).mean(1)
        maps = z.float().numpy()
        return Prediction(score=maps.mean(axis=(1, 2)).astype(np.float32), anomaly_map=maps)
