"""Distance to the mean nominal image, smoothed: the smallest useful xadbench method."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from xadbench import Method, Prediction, TrainData
from xadbench.types import stack_images


class MeanDistance(Method):
    """Anomaly map: channel-averaged squared difference to the mean nominal training image,
    box-filtered over `window` pixels; score: the map's maximum.

    window: side of the box filter (odd), the scale of anomalies it looks for.
    """

    supervision = "none"
    deterministic = True                      # no random parts: any seed gives the same result

    def __init__(self, window: int = 3):
        self.window = window

    def fit(self, train: TrainData, on_epoch=None) -> "MeanDistance":
        self.mean_ = stack_images(train.nominal).mean(0)
        return self

    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_fitted("mean_")
        squared = ((images - self.mean_) ** 2).mean(1, keepdim=True)
        smooth = F.avg_pool2d(squared, self.window, stride=1, padding=self.window // 2, count_include_pad=False)
        maps = smooth[:, 0].numpy().astype(np.float32)
        return Prediction(score=maps.reshape(len(maps), -1).max(1), anomaly_map=maps)
