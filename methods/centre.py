"""`centre`: the trivial reference map every heatmap method must beat.

One fixed isotropic Gaussian at the image centre, σ a quarter of the side, as the map of every
image, and the same score (0) for every image. It looks at nothing, so its pixel AUC measures how
much a data set rewards a centre prior: where the defects usually are, not what a method saw.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from xadbench.method import EpochCallback, Method
from xadbench.types import Prediction, TrainData


def centre_map(height: int, width: int, sigma_fraction: float) -> np.ndarray:
    """exp(−((y − cy)² + (x − cx)²) / 2σ²) on pixel centres, (cy, cx) the image centre and
    σ = sigma_fraction · the shorter side; float32 (H, W), peak 1 (1 only exactly at a pixel centre)."""
    sigma = sigma_fraction * min(height, width)
    y = np.arange(height) - (height - 1) / 2
    x = np.arange(width) - (width - 1) / 2
    return np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma**2)).astype(np.float32)


class Centre(Method):
    """Reference map: a centred Gaussian (σ = `sigma_fraction` of the side) for every image,
    score 0 for every image. `fit` learns nothing beyond the image size; no checks of
    randomisation apply (no parameters) and deletion reports NaN (the score ignores the pixels).

    sigma_fraction: σ as a fraction of the shorter image side (a quarter by default).
    """

    supervision = "none"
    reference = True
    constant_map = True
    deterministic = True

    def __init__(self, sigma_fraction: float = 0.25):
        self.sigma_fraction = sigma_fraction

    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "Centre":
        self.input_shape_ = tuple(int(s) for s in train.nominal[0].image.shape)
        if on_epoch is not None:
            on_epoch(1, 1, 0.0)
        return self

    def checkpoint(self) -> dict[str, Any]:
        self._check_fitted("input_shape_")
        return {"params": self.get_params(), "input_shape": list(self.input_shape_)}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "Centre":
        model = cls(**state["params"])
        model.input_shape_ = tuple(state["input_shape"])
        return model

    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_fitted("input_shape_")
        n, _, height, width = images.shape
        amap = np.broadcast_to(centre_map(height, width, self.sigma_fraction), (n, height, width)).copy()
        return Prediction(score=np.zeros(n, dtype=np.float32), anomaly_map=amap)
