"""The data that flows between loaders, methods and the evaluator.

Field names follow anomalib (`image`, `label`, `mask`, `score`, `anomaly_map`). Higher always
means more anomalous, for scores and maps alike.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Sample:
    """One image with its ground truth.

    image: float32 tensor (C, H, W) in [0, 1], at the resolution the model sees.
    label: 0 nominal, 1 anomalous.
    mask: bool tensor (H', W') at the ground truth's own resolution (may differ from the image's),
        or None where the data set has no pixel annotation.
    key: a stable id, e.g. the file path relative to the data set root.
    category: the original category: defect type for MVTec-AD ("good" for nominal images),
        the original class name for one-vs-rest data sets.
    """

    image: torch.Tensor
    label: int
    mask: torch.Tensor | None = None
    key: str = ""
    category: str = ""


@dataclass(frozen=True)
class Prediction:
    """What a method says about N images: `score` (N,) and `anomaly_map` (N, H, W) at the input's
    resolution, both float32 numpy arrays on the CPU."""

    score: np.ndarray
    anomaly_map: np.ndarray

    def __post_init__(self) -> None:
        if self.score.ndim != 1 or self.anomaly_map.ndim != 3:
            raise ValueError(
                f"Prediction wants score (N,) and anomaly_map (N,H,W); got {self.score.shape} "
                f"and {self.anomaly_map.shape}"
            )
        if len(self.score) != len(self.anomaly_map):
            raise ValueError(
                f"Prediction has {len(self.score)} scores but {len(self.anomaly_map)} maps"
            )


class LazySamples(Sequence[Sample]):
    """A sequence of samples loaded on access, so a large data set is never held whole."""

    def __init__(self, loaders: Sequence[Callable[[], Sample]]):
        self._loaders = list(loaders)

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return LazySamples(self._loaders[index])
        return self._loaders[index]()


@dataclass(frozen=True)
class Task:
    """One nominal class of one data set: the nominal training images and the test split."""

    train: Sequence[Sample]
    test: Sequence[Sample]


@dataclass(frozen=True)
class TrainData:
    """What a method may learn from, already filtered to the supervision it declares.

    nominal: nominal training samples (label 0).
    anomalies: known anomalies (label 1): real labelled defects (with masks when the method may
        use masks) or Outlier Exposure images (mask None).
    confetti: generate confetti-noise anomalies online (unsupervised MVTec-AD protocol).
    confetti_masks: the confetti's own masks are pixel-level supervision ("synthetic-gt").
    """

    nominal: Sequence[Sample]
    anomalies: Sequence[Sample] = ()
    confetti: bool = False
    confetti_masks: bool = False


def stack_images(samples: Sequence[Sample]) -> torch.Tensor:
    """Stack the images of samples into one (N, C, H, W) float32 tensor."""
    if len(samples) == 0:
        raise ValueError("no samples to stack")
    return torch.stack([s.image for s in samples])
