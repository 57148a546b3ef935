"""FCDD: Fully Convolutional Data Description (Liznerski et al., "Explainable Deep One-Class
Classification", ICLR 2021).

A fully convolutional network φ maps an image to a u×v matrix; the pseudo-Huber transform
A = sqrt(φ² + 1) − 1 (section 3) is a low-resolution anomaly heatmap whose mean is the anomaly
score, and Algorithm 1 upsamples it to the input's resolution with a strided transposed
convolution by a fixed Gaussian kernel, each Gaussian centred on its output pixel's receptive
field. Training minimises the hypersphere-classifier loss of eq. 2 (image labels) or, whenever
pixel ground truth exists, the pixel-wise loss of eq. 3 on the upsampled map.

Here: `fcdd_loss` (eq. 2), `fcdd_pixel_loss` (eq. 3) and the estimator `FCDD`. The torch model
(the networks of appendices A and D, `pseudo_huber`, `receptive_upsample`) is `methods.fcdd_net`.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from xadbench.errors import XadError
from xadbench.layers import channel_statistics
from xadbench.method import EpochCallback, resolve_device
from xadbench.methods.fcdd_net import FCDDNet, build_net, check_kernel, is_narrow, receptive_upsample
from xadbench.profiles import check_preset, get_profile
from xadbench.receptive_field import receptive_field
from xadbench.sanity import randomised_copy
from xadbench.training import DeepMethod, predict_in_batches
from xadbench.types import Prediction, TrainData, stack_images
from xadbench.validation import Check, Interval

#: Smallest mean heatmap value fed to −log(1 − exp(−x)); keeps the anomalous loss term ≤ 13.8
#: and its gradient ≤ 1e6, finite for any input (the reference adds 1e-31 inside the log instead).
LOG_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Objectives (eq. 2 and eq. 3)


def neg_log_one_minus_exp(x: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """−log(1 − exp(−x)) for x ≥ 0, computed as −log(−expm1(−x)) (exact for tiny x, where
    1 − exp(−x) would round to 0) with x clamped at `eps`: finite value and gradient always."""
    return -torch.log(-torch.expm1(-x.clamp_min(eps)))


def fcdd_loss(heatmap: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 2, the FCDD objective on image labels: the batch mean of
    (1 − y)·mean(A) − y·log(1 − exp(−mean(A))).

    heatmap: A (B, u, v) ≥ 0 (paper: ‖A‖₁/(u·v), i.e. the mean); labels (B,) 0 nominal, 1 anomalous.
    """
    score = heatmap.flatten(1).mean(1)
    labels = labels.to(score)
    return ((1 - labels) * score + labels * neg_log_one_minus_exp(score)).mean()


def fcdd_pixel_loss(heatmap_up: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 3, the semi-supervised pixel-wise objective: the batch mean of
    (1/m)·Σⱼ (1 − Yⱼ)·A′ⱼ − log(1 − exp(−(1/m)·Σⱼ Yⱼ·A′ⱼ)),   m = H·W,
    i.e. nominal pixels' A′ summed and divided by all m pixels, and the anomalous term on the
    anomalous pixels' A′, also divided by m. Eq. 3 as printed is infinite for an image without
    anomalous pixels (−log(1 − e⁰)); such images get no anomalous term.

    heatmap_up: A′ (B, H, W) ≥ 0; masks: Y (B, H, W) in [0, 1] (1 = anomalous pixel).
    """
    masks = masks.to(heatmap_up)
    nominal = ((1 - masks) * heatmap_up).flatten(1).mean(1)
    anomalous_mean = (masks * heatmap_up).flatten(1).mean(1)
    has_anomaly = masks.flatten(1).amax(1) > 0
    anomalous = torch.where(has_anomaly, neg_log_one_minus_exp(anomalous_mean), torch.zeros_like(nominal))
    return (nominal + anomalous).mean()


# --------------------------------------------------------------------------------------------
# The method


class FCDD(DeepMethod):
    """FCDD (Liznerski et al., ICLR 2021): a fully convolutional one-class classifier whose output
    is its own explanation.

    Network by the profile's `network` (appendix D): fmnist → the 28×28 net, cifar10 → the 32×32
    net, vgg (imagenet, voc, mvtec) → VGG11-BN features up to the second 512-conv with a 1×1 conv head,
    the first ten layers ImageNet-pretrained and frozen. Channels and image size come from the
    training data; normalisation happens inside the model, inputs stay in [0, 1].
    Training (section 3, appendix E): eq. 2 on image labels, or eq. 3 on the upsampled heatmap
    whenever pixel ground truth exists (a known anomaly with a mask, or `confetti_masks`, the
    "synthetic-gt" protocol); anomalies without a mask then count as wholly anomalous. Known
    anomalies (OE images, real defects) and confetti noise (section 4.2) replace nominal samples
    online with probability 0.5 (`xadbench.anomalies.AnomalyMixer`); the paper's augmentation
    per profile (`xadbench.training.augment`).
    Prediction: score = mean of the low-res heatmap A (the paper's ‖A‖₁ up to the constant u·v);
    anomaly_map = A′, A upsampled by Algorithm 1 to the input's resolution (float32).

    Hyperparameters (the `paper` and `cpu` presets set all of them per profile, see
    `preset_overrides`; the defaults are the cpu preset for MVTec-AD, `small` aside):
    epochs: training epochs; one epoch is `passes_per_epoch` passes over the nominal set.
    batch_size: images per step (about half get replaced by anomalies).
    optimizer: "sgd" (Nesterov momentum 0.9) or "adam".
    lr, weight_decay: initial learning rate and L2 weight decay.
    schedule: per-epoch learning-rate schedule: "exponential:G", "milestones:A,B" (×0.1 at each)
        or "none".
    passes_per_epoch: passes over the nominal set per epoch (the paper: 10 for MVTec-AD).
    sigma: σ of Algorithm 1's Gaussian in input pixels (the paper: 1.2 F-MNIST and CIFAR-10, 8
        ImageNet and VOC, 12 MVTec-AD at 224 px; appendix C; the presets take it from the profile,
        `xadbench.profiles`: 7 px for MVTec-AD at the cpu preset's 128 px). Used in training only
        by eq. 3; `predict` reads it when called, so maps for another σ need no refit.
    profile: the data set setup (xadbench.profiles): picks the network and the augmentation.
    pretrained: start the VGG net from ImageNet weights (torchvision's cache, or `weights`);
        False: random init with a warning. No effect on the 28/32 nets (trained from scratch).
    weights: path of a VGG11-BN state dict with torchvision's `features.*` keys, loaded with
        torch.load(weights_only=True), instead of torchvision's ImageNet weights.
    small: the narrow CPU variant of the net: 28/32 nets at a quarter of the widths; the VGG net
        only when pretrained=False (a quarter of the widths, the same receptive field), since
        pretrained weights fix the widths.
    device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1", ...
    predict_batch_size: images per inference batch.
    seed: seeds network initialisation, anomaly sampling and augmentation through
        `DeepMethod.train_network` (the caller's RNG state is untouched); None: unseeded.
    kernel: None, the profile's network (appendix D); an odd k: appendix A's net of kernel size
        k for the receptive-field study (`kernel_net`: the 32 px net with receptive field k + 15,
        or the 224 px MVTec-AD net with 19·(k − 1) + 15), trained from scratch; `small` makes it
        narrow, `pretrained` and `weights` do not apply.

    Fitted attributes: net_ (FCDDNet, eval mode), field_ (ReceptiveField at the training size),
    weights_used_ ("file:<name> sha256:<12 hex>", "torchvision:IMAGENET1K_V1" or "none"),
    pixel_loss_ (whether eq. 3 was used), losses_ (mean loss per epoch), device_.

    Where this class deliberately differs from the reference implementation: docs/design.md,
    "FCDD".
    """

    display_name = "FCDD"
    supervision = "masks"
    maps_smoothed = True
    parameter_constraints = {
        **DeepMethod.parameter_constraints,
        "sigma": Interval(float, 0, closed="neither"),
        "predict_batch_size": Interval(int, 1),
        "kernel": Check(lambda kernel: kernel is None or check_kernel(kernel)),
    }

    def __init__(
        self,
        epochs: int = 20,
        batch_size: int = 16,
        optimizer: str = "sgd",
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        schedule: str = "exponential:0.9",
        passes_per_epoch: int = 1,
        sigma: float = 7.0,
        profile: str = "mvtec",
        pretrained: bool = True,
        weights: str | None = None,
        small: bool = False,
        device: str = "auto",
        predict_batch_size: int = 32,
        seed: int | None = 0,
        kernel: int | None = None,
    ):
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.passes_per_epoch = passes_per_epoch
        self.sigma = sigma
        self.profile = profile
        self.pretrained = pretrained
        self.weights = weights
        self.small = small
        self.device = device
        self.predict_batch_size = predict_batch_size
        self.seed = seed
        self.kernel = kernel

    @classmethod
    def preset_overrides(cls, preset: str, profile: str) -> dict[str, Any]:
        """The profile's σ (`xadbench.profiles`), and on the cpu preset the narrow nets (`small`).

        With the profile's schedules (`DeepMethod.preset`) this gives, paper (appendix E): fmnist
        400 epochs, batch 128, SGD-N 1e-2, wd 1e-6, ×0.98 per epoch; cifar10, imagenet, voc 600
        epochs, batch 200, Adam 1e-3, wd 1e-6, ×0.1 at 400 and 500; mvtec 200 epochs × 10 passes,
        batch 128, SGD-N 1e-3, wd 1e-4, ×0.985 per epoch. cpu: a few CPU minutes per class; the
        narrow 28/32 px nets; MVTec-AD keeps the full pretrained VGG net at the profile's cpu
        image size (128 px, so the pretrained weights fit). The image size per preset is the
        profile's, not a hyperparameter.
        """
        return {"sigma": get_profile(profile).sigma[check_preset(preset)], "small": preset == "cpu"}

    # ---- fitting

    @staticmethod
    def _has_pixel_supervision(train: TrainData) -> bool:
        return bool(train.confetti_masks) or any(s.mask is not None for s in train.anomalies)

    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "FCDD":
        """Train on `train` (see the class docstring); returns self."""
        if len(train.nominal) == 0:
            raise XadError("FCDD.fit got no nominal training images")
        profile = get_profile(self.profile)
        channels, height, width = train.nominal[0].image.shape
        pixel = self._has_pixel_supervision(train)
        sigma = float(self.sigma)
        built = {}

        def build() -> FCDDNet:
            scratch = profile.network != "vgg" or self.kernel is not None
            mean, std = channel_statistics(stack_images(train.nominal)) if scratch else (None, None)
            net, built["weights"] = build_net(profile.name, channels, small=self.small, pretrained=self.pretrained,
                                              weights=self.weights, mean=mean, std=std, kernel=self.kernel)
            return net

        def make_loss(net: FCDDNet):
            built["field"] = field = receptive_field(net, (height, width))

            def loss_fn(images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
                heatmap = net.heatmap(images)
                if pixel:
                    upsampled = receptive_upsample(heatmap, field, sigma, tuple(images.shape[-2:]))
                    return fcdd_pixel_loss(upsampled, masks)
                return fcdd_loss(heatmap, labels)
            return loss_fn

        net, losses = self.train_network(build, make_loss, train, profile.name, on_epoch)
        self.net_ = net
        self.field_ = built["field"]
        self.weights_used_ = built["weights"]
        self.pixel_loss_ = pixel
        self.losses_ = losses
        self.device_ = resolve_device(self.device)
        self.channels_ = channels
        self.input_size_ = (height, width)
        return self

    # ---- checkpoints

    def checkpoint(self) -> dict[str, Any]:
        """Hyperparameters, the trained network's state dict (on the CPU) and the fitted attributes."""
        self._check_fitted("net_")
        return {
            "params": self.get_params(),
            "net": {name: tensor.detach().cpu() for name, tensor in self.net_.state_dict().items()},
            "channels": self.channels_, "input_size": list(self.input_size_), "weights_used": self.weights_used_,
            "pixel_loss": self.pixel_loss_, "losses": list(self.losses_),
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "FCDD":
        model = cls(**state["params"])
        profile = get_profile(model.profile).name
        narrow = is_narrow(profile, model.small, model.pretrained, model.kernel)  # the architecture fit built
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the random init the saved weights replace
            net, _ = build_net(profile, state["channels"], small=narrow, pretrained=False, kernel=model.kernel)
        net.load_state_dict(state["net"])
        model.device_ = resolve_device(model.device)
        model.net_ = net.to(device=model.device_, memory_format=torch.channels_last).eval()
        model.input_size_ = tuple(state["input_size"])
        model.field_ = receptive_field(model.net_, model.input_size_)
        model.channels_ = state["channels"]
        model.weights_used_ = state["weights_used"]
        model.pixel_loss_ = state["pixel_loss"]
        model.losses_ = list(state["losses"])
        return model

    def randomised(self, cascade_step: int | None) -> "FCDD":
        """A copy with the top `cascade_step` layers of the net re-initialised (None: every layer,
        the frozen pretrained ones included); see `Method.randomised`."""
        return randomised_copy(self, "net_", cascade_step)

    # ---- prediction

    def predict(self, images: torch.Tensor) -> Prediction:
        """Scores (mean of A) and maps (A′ at the input's resolution) for images (N, C, H, W) in [0, 1]."""
        self._check_fitted("net_")
        if images.ndim != 4 or images.shape[1] != self.channels_:
            raise XadError(f"FCDD was fitted on {self.channels_}-channel images; got a batch of shape "
                           f"{tuple(images.shape)}")
        size = tuple(images.shape[-2:])
        field = self.field_ if size == self.input_size_ else receptive_field(self.net_, size)
        net, sigma = self.net_, float(self.sigma)

        def run(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            heatmap = net.heatmap(batch.float())
            return heatmap.flatten(1).mean(1), receptive_upsample(heatmap, field, sigma, size)

        with torch.inference_mode():
            scores, maps = predict_in_batches(run, images, self.predict_batch_size, self.device_)
        return Prediction(score=scores.numpy().astype(np.float32), anomaly_map=maps.numpy().astype(np.float32))
