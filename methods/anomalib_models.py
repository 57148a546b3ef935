"""anomalib's PatchCore and PaDiM as xadbench methods, on the VGG11-BN features FCDD and grad use.

anomalib (Akcay et al., 2022) is the library the field uses for feature-embedding anomaly
detectors. This adapter runs its torch models inside xadbench's runner, protocols and evaluator:
`PatchcoreModel` (Roth et al., CVPR 2022: locally aggregated patch features, a memory bank
thinned by greedy k-center coreset sampling (anomalib's selection, with a cheaper distance update:
`k_center_greedy`), nearest-neighbour distances, the paper's reweighted
image score) and `PadimModel` (Defard et al., ICPR 2021: a multivariate Gaussian per feature-map
position over a random subset of the feature channels, Mahalanobis distance maps). Their feature
extractor, random projection, statistics and anomaly-map generators (nearest or bilinear upsampling, then
anomalib's Gaussian blur with σ = 4) are anomalib's own; its Lightning engine and data modules are
not used.

Backbone: anomalib's models take a timm model name, whose ImageNet weights timm downloads. Here
they get an `nn.Module` instead, which anomalib's `TimmFeatureExtractor` wraps with torchvision's
`create_feature_extractor`: torchvision's VGG11-BN `features` from `xadbench.backbones`, with the
same weights as FCDD and grad (a weights file, torchvision's cache, or random initialisation), so
a comparison of heatmap methods runs on equal features. Inputs are standardised with ImageNet
statistics before the backbone (greyscale repeated to RGB). The default layers are the outputs
of the ReLUs after VGG11-BN's second 256-channel conv (`features.13`, stride 4) and after its
second 512-channel conv (`features.20`, stride 8, where FCDD's net ends): the mid-level pair
PatchCore and PaDiM take from ResNets (their `layer2`/`layer3`), at one block earlier because
the cpu preset's 128 px images are smaller than anomalib's 256 px.

To wrap another anomalib image model that learns from nominal features without an optimiser
(e.g. DFM, DFKDE), subclass `AnomalibMethod`: an `__init__` with its hyperparameters,
`build_model(backbone)` returning the anomalib torch model, and `finish_fit(model)` for the
step that turns the collected training features into the model (PatchCore: coreset sampling;
PaDiM: the Gaussian fit); then declare it under the entry-point group `xadbench.methods`.

Needs the optional extra: `pip install 'xadbench[anomalib]'`. Without it this module fails to
load with one line naming the extra (`MissingExtraError`), so the registry reports it and the
other methods keep working.
"""
from __future__ import annotations

import importlib
import importlib.util
import random
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from xadbench import backbones
from xadbench.errors import MissingExtraError, XadError
from xadbench.layers import Standardise
from xadbench.method import EpochCallback, Method, resolve_device, torch_threads
from xadbench.profiles import check_preset, get_profile
from xadbench.sanity import randomised_copy
from xadbench.training import predict_in_batches
from xadbench.types import Prediction, TrainData, stack_images

INSTALL_HINT = "anomalib's models need the optional extra: pip install 'xadbench[anomalib]'"
if importlib.util.find_spec("anomalib") is None:
    raise MissingExtraError(f"anomalib is not installed; {INSTALL_HINT}")

#: Backbones the adapter builds; each is shared with xadbench's other methods.
BACKBONES = ("vgg11_bn",)
#: torchvision's vgg11_bn module names: ReLU after conv256 #2 (stride 4), after conv512 #2 (stride 8).
VGG_LAYERS = ("features.13", "features.20")
#: Modules of vgg11_bn's `features`: conv, BN, ReLU per channel entry, one per max pool (29).
VGG11_MODULES = sum(1 if item == "M" else 3 for item in backbones.VGG11_LAYOUT)


def _anomalib_class(module: str, name: str) -> type:
    """An anomalib class (a torch model or component), imported on first use (anomalib's import takes seconds
    and pulls Lightning); its import-time deprecation notices from timm and anomalib are muted."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise MissingExtraError(f"cannot use anomalib ({type(exc).__name__}: {exc}); {INSTALL_HINT}") from None


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """torch's, numpy's and Python's global RNGs seeded inside, the caller's states restored after:
    anomalib draws PaDiM's channel subset (torch; Python's `random` in older releases such as
    2.1), PatchCore's first coreset centre (torch) and its random projection (torch, and numpy's
    global RNG through scikit-learn) from them."""
    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def k_center_greedy(features: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of `size` rows of `features` (N, d) chosen by greedy k-center selection (Sener &
    Savarese, ICLR 2018; PatchCore's coreset, Roth et al. 2022, algorithm 1): a first row drawn
    with torch's RNG, then repeatedly the row farthest from all chosen ones. The same selection
    as anomalib's `KCenterGreedy` (same first draw, same order), but each step's distances come
    from one matrix-vector product, ‖x‖² − 2 x·c + ‖c‖², where anomalib materialises x − c for
    every row; the greedy only compares them, so squared distances serve (bench/patchcore_fit.py
    times both)."""
    squared_norms = features.pow(2).sum(dim=1)
    nearest = torch.full_like(squared_norms, float("inf"))  # squared distance to the nearest chosen row
    index = torch.randint(high=len(features), size=(1,), device=features.device).squeeze()
    chosen = [index]
    for _ in range(size - 1):
        centre = features[index]
        distance = torch.addmv(squared_norms + centre.dot(centre), features, centre, alpha=-2)
        torch.minimum(nearest, distance, out=nearest)
        nearest[index] = 0  # exactly, whatever the rounding of the expansion
        index = nearest.argmax()
        chosen.append(index)
    return torch.stack(chosen)


def greedy_coreset(embedding: torch.Tensor, ratio: float) -> torch.Tensor:
    """PatchCore's memory-bank indices: `ratio` of the rows of `embedding` (int(N·ratio), a
    ValueError when that is zero), chosen by `k_center_greedy` on anomalib's sparse random
    projection of the rows (Li et al., KDD 2006; anomalib's KCenterGreedy settings, ε = 0.9 in
    the Johnson-Lindenstrauss bound: ~300 dimensions for a MVTec-AD class)."""
    sampler = _anomalib_class("anomalib.models.components", "KCenterGreedy")(embedding=embedding,
                                                                            sampling_ratio=ratio)
    projected = sampler.model.fit(embedding).transform(embedding)
    return k_center_greedy(projected, sampler.coreset_size)


class AnomalibMethod(Method):
    """An anomalib torch model fitted on nominal images: features of every training image are
    collected by the model's own training-mode forward pass, then `finish_fit` builds the model
    from them; `predict` returns anomalib's image scores and anomaly maps (already blurred by
    anomalib's generator, hence `maps_smoothed`: the runner's shared blur does not apply).

    Subclasses set the hyperparameters backbone, layers, batch_size, pretrained, weights, seed and
    device (plus their own), and implement `build_model` and `finish_fit`."""

    supervision = "none"
    maps_smoothed = True

    backbone: str
    layers: Sequence[str]
    batch_size: int
    pretrained: bool
    weights: str | None
    seed: int
    device: str

    @classmethod
    def preset(cls, preset: str, profile: str) -> dict[str, Any]:
        check_preset(preset)
        get_profile(profile)
        return {}

    def build_model(self, backbone: nn.Module) -> nn.Module:
        """The anomalib torch model on `backbone` with this method's layers and hyperparameters."""
        raise NotImplementedError

    def finish_fit(self, model: nn.Module) -> None:
        """Turn the features the model collected in training mode into the fitted model."""
        raise NotImplementedError

    def _check(self) -> None:
        if self.backbone not in BACKBONES:
            raise XadError(f"{type(self).__name__}: unknown backbone {self.backbone!r}; known: {', '.join(BACKBONES)}")
        if isinstance(self.layers, str) or not self.layers or not all(
                isinstance(name, str) and name.startswith("features.") and name[9:].isdigit()
                and int(name[9:]) < VGG11_MODULES for name in self.layers):
            raise XadError(f"{type(self).__name__}: layers must be a non-empty list of vgg11_bn module names "
                           f"features.0 … features.{VGG11_MODULES - 1}, e.g. "
                           f"{list(VGG_LAYERS)}; got {self.layers!r}")
        if self.batch_size < 1:
            raise XadError(f"{type(self).__name__}: batch_size must be at least 1, got {self.batch_size}")

    def _build(self, device: torch.device, pretrained: bool, weights: str | None) -> tuple[nn.Module, str]:
        """The anomalib model on the VGG11-BN features cut after the deepest layer used, and the
        backbone's weights id."""
        features, weights_used = backbones.vgg11_bn_features(pretrained, weights)
        deepest = max(int(name.split(".")[1]) for name in self.layers)
        backbone = nn.Sequential()
        backbone.add_module("features", features[: deepest + 1])  # torchvision's names: features.<index>
        try:
            with seeded(self.seed, device):
                return self.build_model(backbone.eval()).to(device), weights_used
        except ValueError as exc:  # torchvision names a layer the backbone lacks; anomalib a bad size
            raise XadError(f"{type(self).__name__}: {' '.join(str(exc).split())[:300]}") from None

    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "AnomalibMethod":
        self._check()
        device = resolve_device(self.device)
        model, self.weights_used_ = self._build(device, self.pretrained, self.weights)
        standardise = Standardise(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD).to(device)
        images = stack_images(train.nominal)
        model.train()  # anomalib's models collect training features in training mode
        with torch.no_grad():
            for start in range(0, len(images), self.batch_size):
                model(standardise(images[start : start + self.batch_size].to(device)))
        try:
            with seeded(self.seed, device):
                self.finish_fit(model)
        except ValueError as exc:  # e.g. a coreset of size zero
            raise XadError(f"{type(self).__name__}: {' '.join(str(exc).split())[:300]}") from None
        self.input_shape_ = tuple(int(s) for s in images.shape[1:])
        self.standardise_ = standardise
        self.model_ = model.eval()
        if on_epoch is not None:
            on_epoch(1, 1, 0.0)
        return self

    def checkpoint(self) -> dict[str, Any]:
        """Hyperparameters, the model's state dict on the CPU (backbone weights and what fit
        learned: PatchCore's memory bank, PaDiM's channel subset, means and inverse covariances)
        and the fitted attributes."""
        self._check_fitted("model_")
        return {"params": self.get_params(), "input_shape": list(self.input_shape_),
                "weights_used": self.weights_used_,
                "model": {name: t.detach().cpu() for name, t in self.model_.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "AnomalibMethod":
        method = cls(**state["params"])
        method._check()
        device = resolve_device(method.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the random init the saved weights replace
            model, _ = method._build(device, pretrained=False, weights=None)
        model.load_state_dict(state["model"])  # anomalib resizes the fitted buffers to the saved ones
        method.model_ = model.eval()
        method.standardise_ = Standardise(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD).to(device)
        method.input_shape_ = tuple(state["input_shape"])
        method.weights_used_ = state["weights_used"]
        return method

    def randomised(self, cascade_step: int | None) -> "AnomalibMethod":
        """A copy whose backbone has its top `cascade_step` layers (None: all) re-initialised,
        the memory bank or Gaussians fitted on the original features kept (Adebayo et al., 2018:
        the model's parameters randomised, the explanation method unchanged); see
        `Method.randomised`."""
        return randomised_copy(self, "model_", cascade_step)

    def _score_and_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # contiguous: predict_in_batches hands channels-last batches; some anomalib models
        # (DFM) flatten features with .view, which needs the standard layout
        output = self.model_(self.standardise_(x).contiguous())
        return output.pred_score.reshape(len(x)), output.anomaly_map.reshape(len(x), *x.shape[-2:])

    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_fitted("model_")
        if tuple(images.shape[1:]) != self.input_shape_:
            raise XadError(f"{type(self).__name__} was fitted on images {self.input_shape_}, got {tuple(images.shape[1:])}")
        device = self.standardise_.mean.device
        with torch.inference_mode():
            score, amap = predict_in_batches(self._score_and_map, images, self.batch_size, device)
        return Prediction(score=score.numpy().astype(np.float32), anomaly_map=amap.numpy().astype(np.float32))


class PatchCore(AnomalibMethod):
    """PatchCore (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR
    2022) through anomalib's `PatchcoreModel` on the shared VGG11-BN features.

    Features of `layers` are averaged over 3×3 neighbourhoods, the deeper map upsampled to the
    first and concatenated; the memory bank keeps `coreset_ratio` of all nominal patch features,
    chosen by greedy k-center sampling on anomalib's sparse random projection (`greedy_coreset`;
    its cost grows with the coreset size times the number of patches, ~200k for a MVTec-AD class
    at 128 px). A patch's anomaly is its
    distance to the nearest memory-bank feature; the image score is the largest patch distance,
    reweighted by the distances to that neighbour's `num_neighbors` nearest memory entries
    (paper eq. 7). Map: nearest upsampling of the patch distances, Gaussian blur σ = 4.

    Hyperparameters: backbone ("vgg11_bn"), layers, coreset_ratio, num_neighbors, batch_size,
    pretrained and weights (the VGG backbone, as for FCDD), seed (coreset sampling), device.
    """

    display_name = "PatchCore"

    def __init__(
        self,
        backbone: str = "vgg11_bn",
        layers: Sequence[str] = VGG_LAYERS,
        coreset_ratio: float = 0.1,
        num_neighbors: int = 9,
        batch_size: int = 32,
        pretrained: bool = True,
        weights: str | None = None,
        seed: int = 0,
        device: str = "auto",
    ):
        self.backbone = backbone
        self.layers = layers
        self.coreset_ratio = coreset_ratio
        self.num_neighbors = num_neighbors
        self.batch_size = batch_size
        self.pretrained = pretrained
        self.weights = weights
        self.seed = seed
        self.device = device

    @classmethod
    def preset(cls, preset: str, profile: str) -> dict[str, Any]:
        """"paper": anomalib's default coreset of 10 % (the paper's PatchCore-10%). "cpu": 1 %
        (the paper's PatchCore-1%, within about 0.5 points of it on MVTec-AD, Roth et al.
        table 1), which makes the greedy sampling ten times shorter: a few CPU minutes per class.
        The memory bank is not subsampled before the greedy step: the k-center guarantee (every
        nominal patch within the coreset's radius of a kept one) holds for all patches only when
        all take part."""
        super().preset(preset, profile)
        return {"layers": VGG_LAYERS, "coreset_ratio": 0.1 if preset == "paper" else 0.01, "num_neighbors": 9}

    def _check(self) -> None:
        super()._check()
        if not 0 < self.coreset_ratio <= 1:
            raise XadError(f"PatchCore: coreset_ratio must be in (0, 1], got {self.coreset_ratio}")
        if self.num_neighbors < 1:
            raise XadError(f"PatchCore: num_neighbors must be at least 1, got {self.num_neighbors}")

    def build_model(self, backbone: nn.Module) -> nn.Module:
        model_class = _anomalib_class("anomalib.models.image.patchcore.torch_model", "PatchcoreModel")
        return model_class(layers=list(self.layers), backbone=backbone, pre_trained=False,
                           num_neighbors=self.num_neighbors)

    def finish_fit(self, model: nn.Module) -> None:
        embedding = torch.vstack(model.embedding_store)
        model.embedding_store.clear()
        model.memory_bank = embedding[greedy_coreset(embedding, self.coreset_ratio)]


class PaDiM(AnomalibMethod):
    """PaDiM (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
    Detection and Localization", ICPR 2021) through anomalib's `PadimModel` on the shared
    VGG11-BN features.

    Features of `layers` are upsampled to the first and concatenated; `n_features` channels are
    kept at random (drawn once with `seed`, as the paper does); a Gaussian per feature-map
    position is fitted to the nominal images (covariance + 0.01·I). Map: the Mahalanobis distance
    per position, bilinearly upsampled, Gaussian blur σ = 4; score: the map's maximum.

    Hyperparameters: backbone ("vgg11_bn"), layers, n_features, batch_size, pretrained and
    weights (the VGG backbone, as for FCDD), seed (channel subset), device.
    """

    display_name = "PaDiM"

    def __init__(
        self,
        backbone: str = "vgg11_bn",
        layers: Sequence[str] = VGG_LAYERS,
        n_features: int = 200,
        batch_size: int = 32,
        pretrained: bool = True,
        weights: str | None = None,
        seed: int = 0,
        device: str = "auto",
    ):
        self.backbone = backbone
        self.layers = layers
        self.n_features = n_features
        self.batch_size = batch_size
        self.pretrained = pretrained
        self.weights = weights
        self.seed = seed
        self.device = device

    @classmethod
    def preset(cls, preset: str, profile: str) -> dict[str, Any]:
        """Both presets: 200 of the 768 channels of the default layers, about the fraction the
        paper keeps for its ResNet-18 (100 of 448) and WideResNet-50 (550 of 1792) backbones."""
        super().preset(preset, profile)
        return {"layers": VGG_LAYERS, "n_features": 200}

    def _check(self) -> None:
        super()._check()
        if self.n_features < 1:
            raise XadError(f"PaDiM: n_features must be at least 1, got {self.n_features}")

    def build_model(self, backbone: nn.Module) -> nn.Module:
        from torchvision.models.feature_extraction import create_feature_extractor

        with torch.no_grad():  # the layers' channels, from a dry run
            outputs = create_feature_extractor(backbone, list(self.layers))(torch.zeros(1, 3, 32, 32))
        channels = sum(int(f.shape[1]) for f in outputs.values())
        if self.n_features > channels:
            raise XadError(f"PaDiM: n_features={self.n_features} exceeds the {channels} channels of layers "
                           f"{list(self.layers)}")
        model_class = _anomalib_class("anomalib.models.image.padim.torch_model", "PadimModel")
        return model_class(backbone=backbone, layers=list(self.layers), pre_trained=False,
                           n_features=self.n_features)

    def finish_fit(self, model: nn.Module) -> None:
        # One thread for the Gaussians' batched inversion: with torch 2.14.1's oneMKL, once
        # torch.set_num_threads has been called (as the executors do), a batch of 200×200 LU
        # factorisations fails ("Pivots given to lu_solve must all be greater or equal to 1").
        with torch_threads(1):
            model.fit()
