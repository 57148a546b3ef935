"""Training protocols: which anomalies a method may learn from, and which test set is scored.

unsupervised     no real anomalies: Outlier Exposure images when an OE source is given, else
                 confetti noise (paper sections 4.1 and 4.2).
semi-supervised  k real labelled anomalies per anomaly category (defect type), with their masks,
                 drawn from the test split and REMOVED from the scored test set (the reference
                 implementation leaks them into the evaluation; we do not). k = 1 as in the paper.
synthetic-gt     confetti noise with its own masks as pixel-level supervision.

The picked anomalies are removed from the test set for every method of a run, including those
that cannot use them, so that all methods are scored on the same images.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from xadbench.errors import XadError
from xadbench.types import Sample, Task, TrainData

PROTOCOLS = ("unsupervised", "semi-supervised", "synthetic-gt")


def check_protocol(protocol: str) -> str:
    if protocol not in PROTOCOLS:
        raise XadError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return protocol


def pick_labelled_anomalies(test: Sequence[Sample], k: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """k random anomalous test samples per category; returns (picked, remaining test)."""
    by_category: dict[str, list[int]] = defaultdict(list)
    for index, sample in enumerate(test):
        if sample.label == 1:
            by_category[sample.category].append(index)
    if not by_category:
        raise XadError("semi-supervised protocol needs anomalous test images to draw from; found none")
    rng = np.random.default_rng(seed)
    picked: set[int] = set()
    for category in sorted(by_category):
        indices = by_category[category]
        if len(indices) <= k:
            raise XadError(
                f"semi-supervised protocol: category {category!r} has {len(indices)} anomalous test "
                f"images, too few to take {k} for training and still score it"
            )
        picked.update(int(i) for i in rng.choice(indices, size=k, replace=False))
    samples = list(test)
    return ([samples[i] for i in sorted(picked)],
            [s for i, s in enumerate(samples) if i not in picked])


def prepare(task: Task, protocol: str, *, seed: int, k: int = 1,
            outlier_exposure: Sequence[Sample] = ()) -> tuple[TrainData, list[Sample]]:
    """The full training data a protocol allows, and the test samples to score."""
    check_protocol(protocol)
    test = list(task.test)
    if protocol == "semi-supervised":
        picked, test = pick_labelled_anomalies(test, k, seed)
        return TrainData(task.train, anomalies=[*picked, *outlier_exposure]), test
    if protocol == "synthetic-gt":
        return TrainData(task.train, confetti=True, confetti_masks=True), test
    return TrainData(task.train, anomalies=outlier_exposure, confetti=len(outlier_exposure) == 0), test


def restrict(train: TrainData, supervision: str) -> TrainData:
    """What a method that declares `supervision` is given: never more than it can use."""
    if supervision == "none":
        return TrainData(train.nominal)
    if supervision == "labels":
        unmasked = [replace(s, mask=None) if s.mask is not None else s for s in train.anomalies]
        return TrainData(train.nominal, anomalies=unmasked, confetti=train.confetti)
    if supervision == "masks":
        return train
    raise XadError(f"unknown supervision {supervision!r}; known: none, labels, masks")
