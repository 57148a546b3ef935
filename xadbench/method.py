"""The method contract, after scikit-learn's estimators.

Hyperparameters are keyword arguments of `__init__`, stored unchanged under their own names;
`fit` learns from a `TrainData` and returns self; `predict` maps images to a `Prediction`.
Everything learned ends in an underscore. `xadbench.testing` checks the contract.
"""
from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch

from xadbench.errors import NotFittedError, XadError
from xadbench.types import Prediction, TrainData

#: Called once per finished epoch with (epoch, epochs, loss).
EpochCallback = Callable[[int, int, float], None]

SUPERVISION_LEVELS = ("none", "labels", "masks")


class Method(abc.ABC):
    """An anomaly detector that explains itself with a heatmap.

    Capability flags, the class attributes a subclass may set (`FLAGS`; checked when the class
    is defined, so a misspelt or unknown flag is an error rather than silently ignored):
    display_name: how tables, figures and the report name it (e.g. "FCDD"); None: its registered
        name.
    supervision: what it can learn from beyond nominal images: "none" (nominal only), "labels"
        (known anomalies with image labels: confetti, Outlier Exposure, real defects), "masks"
        (also pixel masks of known anomalies). The runner gives it no more than that.
    maps_smoothed: True when its maps are already smoothed by construction (FCDD's Gaussian
        upsampling), so the shared post-processor (`xadbench.heatmaps.PostProcessor`) does not
        blur them again.
    reference: True for a reference map (`centre`, `pixelstats`): a simple map that runs beside
        the methods so their numbers are read against it; reports show it first, as the floor,
        and never mark it best.
    constant_map: True when its map is the same for every image (e.g. `centre`): the map is its
        own mean map by construction, so the own-mean-map check (`xadbench.sanity`) does not apply,
        nor do the contract checks that ask a method to detect something or to learn from its
        training data (`xadbench.testing.NOT_FOR_CONSTANT_MAPS`).
    deterministic: True when `fit` has no random parts, so the seed cannot change its result
        (the contract checks that another seed changes the result of every other method).
    seed_sensitive: True when its training is so sensitive to the seed (and to the order of
        floating-point reductions, i.e. the thread count) that one seed's number says little;
        the cpu preset then runs it with grid.SENSITIVE_SEEDS unless --seeds is given, so every table
        shows its spread over seeds (docs/reproducibility.md).
    Also declared: parameter_constraints, {keyword: Interval | OneOf | Check}
        (xadbench.validation), checked with the types annotated on `__init__` before a run starts
        (after scikit-learn's `_parameter_constraints`).

    Fitted attribute every method has: weights_used_, the id of the pretrained weights the
    method started from ("file:<name> sha256:<12 hex>", "torchvision:IMAGENET1K_V1"), "none"
    (the class default) when it starts from none. A method that trains a network derives from
    `xadbench.training.DeepMethod`.
    """

    display_name: ClassVar[str | None] = None
    supervision: ClassVar[str] = "none"
    maps_smoothed: ClassVar[bool] = False
    reference: ClassVar[bool] = False
    constant_map: ClassVar[bool] = False
    deterministic: ClassVar[bool] = False
    seed_sensitive: ClassVar[bool] = False
    parameter_constraints: ClassVar[dict[str, Any]] = {}
    weights_used_: str = "none"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        check_declarations(cls)

    @classmethod
    def preset(cls, preset: str, profile: str) -> dict[str, Any]:
        """Hyperparameters of the named preset ("cpu" or "paper") for a data set profile."""
        return {}

    @classmethod
    def param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]

    def get_params(self) -> dict[str, Any]:
        """The `__init__` keywords as given (scikit-learn's `get_params`, without nesting)."""
        return {name: getattr(self, name) for name in self.param_names()}

    @abc.abstractmethod
    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "Method":
        """Learn from `train`; return self."""

    @abc.abstractmethod
    def predict(self, images: torch.Tensor) -> Prediction:
        """Score images (N, C, H, W) in [0, 1]; maps at the input's resolution."""

    def checkpoint(self) -> dict[str, Any] | None:
        """The fitted state as plain values and tensors (so `torch.load(..., weights_only=True)`
        reads it back) from which `from_checkpoint` rebuilds the method without refitting; None,
        the default, for a method that does not support checkpoints."""
        return None

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "Method":
        """The fitted method back from `checkpoint()`'s state."""
        raise XadError(f"{cls.__name__} does not support checkpoints")

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        """Anomaly scores (N,) float32 only; the deletion and insertion curves call it for many
        modified images. Default: `predict`'s scores; a method whose map costs more than its score
        (gradient attributions) overrides it."""
        return self.predict(images).score

    def randomised(self, cascade_step: int | None) -> "Method | None":
        """The model randomisation hook (Adebayo et al., NeurIPS 2018): a copy of the fitted
        method whose `cascade_step` layers nearest the output (None: all layers) are re-initialised,
        the method itself unchanged; None, the default, for a method without trained layers
        (the check then reports nothing). `xadbench.sanity.randomised_copy` implements it for a
        method with one network."""
        return None

    def _check_fitted(self, attribute: str) -> None:
        if not hasattr(self, attribute):
            raise NotFittedError(f"{type(self).__name__}: call fit before predict")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


#: The capability flags a method declares as class attributes, with the type each must have.
FLAGS: dict[str, type | tuple[type, ...]] = {"display_name": (str, type(None)), "supervision": str,
                                              "maps_smoothed": bool, "reference": bool, "constant_map": bool,
                                              "deterministic": bool, "seed_sensitive": bool}
#: Other class attributes of the contract: not flags, but declared by Method too.
DECLARED = ("parameter_constraints",)


def check_declarations(cls: type) -> None:
    """Raise XadError when the class body of a method plugin sets a flag of the wrong type or
    value, or a public class attribute that looks like a flag (a bool or a str) but is none of
    `FLAGS`. Constants (UPPER_CASE), fitted defaults (ending in "_"), methods and other values
    (containers, numbers, objects) are not flags."""
    for name, value in vars(cls).items():
        if name.startswith("_") or name.endswith("_") or name.isupper() or name in DECLARED:
            continue
        if name not in FLAGS and not isinstance(value, (bool, str)):
            continue
        if name not in FLAGS:
            raise XadError(f"method plugin {cls.__module__}.{cls.__qualname__} sets {name!r}, which is not a "
                           f"flag xadbench reads; the flags are: {', '.join(sorted(FLAGS))}")
        if not isinstance(value, FLAGS[name]) or (name == "supervision" and value not in SUPERVISION_LEVELS):
            allowed = f"one of {SUPERVISION_LEVELS}" if name == "supervision" else (
                "a str or None" if name == "display_name" else "True or False")
            raise XadError(f"method plugin {cls.__module__}.{cls.__qualname__} sets {name} = {value!r}; "
                           f"use {allowed}")


class Variant:
    """A registered name for a Method class with some hyperparameters fixed, e.g. `grad-ig` is
    the gradient method with `attribution="integrated_gradients"`. Behaves like the class: its
    flags are the class's, except a `display_name` of its own."""

    def __init__(self, method_class: type[Method], display_name: str | None = None, **fixed: Any):
        self.method_class = method_class
        self.fixed = fixed
        self.own_display_name = display_name
        self.__doc__ = method_class.__doc__

    def __getattr__(self, name: str) -> Any:
        """The method class's flags (only those: a Variant is not an instance)."""
        if name in FLAGS:
            return getattr(self.method_class, name)
        raise AttributeError(f"{type(self).__name__} of {self.method_class.__name__} has no attribute {name!r}")

    @property
    def display_name(self) -> str | None:
        return self.own_display_name or self.method_class.display_name

    def preset(self, preset: str, profile: str) -> dict[str, Any]:
        return {**self.method_class.preset(preset, profile), **self.fixed}

    def param_names(self) -> list[str]:
        return self.method_class.param_names()

    def from_checkpoint(self, state: dict[str, Any]) -> Method:
        return self.method_class.from_checkpoint(state)

    def __call__(self, **params: Any) -> Method:
        return self.method_class(**{**params, **self.fixed})

    def __repr__(self) -> str:
        fixed = ", ".join(f"{k}={v!r}" for k, v in self.fixed.items())
        return f"Variant({self.method_class.__name__}, {fixed})"


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' picks CUDA where one exists, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's CPU thread count set to `threads` inside the block and restored after it; None
    leaves it as it is."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
