"""Gradient baseline: a hypersphere classifier (HSC) with fully connected layers, explained by the
gradient of its anomaly score w.r.t. the input.

The FCDD paper (Liznerski et al., ICLR 2021, sec. 4) compares FCDD with "gradient-based methods
(Simonyan et al., 2013) applied to hypersphere classifier (HSC) models (Ruff et al., 2020a) with
unrestricted network architectures (i.e. networks that also have fully connected layers)", and
reports in sec. 4.1 ("Baseline Explanations") that these heatmaps are mostly centred blobs. The
model is trained with the HSC objective, paper eq. (1), on the same anomalies as FCDD (confetti,
Outlier Exposure or a few real defects, mixed in online by `xadbench.training.fit_loop`).

All attributions are computed with Captum (Kokhlikyan et al., 2020): `Saliency` (Simonyan et al.,
2013), `IntegratedGradients` (Sundararajan et al., 2017), `NoiseTunnel` smoothing of Saliency
(SmoothGrad, Smilkov et al., 2017) and `LayerGradCam` (Grad-CAM, Selvaraju et al., ICCV 2017),
over a forward function that returns the per-image HSC anomaly score. One class,
`GradSaliency`, serves all four through its `attribution` keyword; `GRAD_IG`, `GRAD_SMOOTH` and
`GRAD_CAM` register the other three under their own names.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from xadbench import backbones
from xadbench.errors import XadError
from xadbench.layers import Standardise, channel_statistics
from xadbench.method import EpochCallback, Variant, resolve_device
from xadbench.options import check_seed
from xadbench.profiles import check_preset, get_profile
from xadbench.sanity import randomised_copy
from xadbench.training import DeepMethod, predict_in_batches
from xadbench.types import Prediction, TrainData, stack_images
from xadbench.validation import Check, Interval, OneOf

ATTRIBUTIONS = ("saliency", "integrated_gradients", "smoothgrad", "gradcam")
#: Inside −log(1 − exp(−h) + ε): keeps the anomalous HSC term finite at h = 0 (reference: 1e-9).
HSC_EPS = 1e-9
LEAK = 0.01


# -- the HSC objective -------------------------------------------------------------------------
def pseudo_huber(features: torch.Tensor) -> torch.Tensor:
    """h(a) = sqrt(‖a‖² + 1) − 1 per row of (B, d) `features` (paper eq. 1), computed as
    ‖a‖² / (sqrt(‖a‖² + 1) + 1), which is the same value without cancellation for small ‖a‖."""
    squared = features.pow(2).sum(dim=1)
    return squared / (torch.sqrt(squared + 1) + 1)


def hsc_loss(h: torch.Tensor, labels: torch.Tensor, eps: float = HSC_EPS) -> torch.Tensor:
    """Mean HSC loss (paper eq. 1) of anomaly scores h (B,) ≥ 0 with labels (B,) in {0, 1}:
    nominal h, anomalous −log(1 − exp(−h)), the latter as −log(−expm1(−h) + eps) so that it stays
    accurate for small h and finite (at most −log eps) with a finite gradient at h = 0."""
    anomalous = -torch.log(-torch.expm1(-h) + eps)
    return ((1 - labels) * h + labels * anomalous).mean()


# -- networks ----------------------------------------------------------------------------------
def _conv_block(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(LEAK)]


def small_features(profile: str, channels: int, narrow: bool = False) -> nn.Sequential:
    """The convolutional part of the paper's 28 and 32 px nets (appendix D) without FCDD's final
    1×1 convolution, and with the last pool the FCDD net leaves out (the fully connected head
    replaces it, as in the classic LeNet-type counterparts). narrow: the widths of FCDD's narrow
    CPU variants (a quarter), so that the cpu presets of both methods train nets of one size.

    fmnist: conv5 128, BN, LReLU, pool; conv5 128, BN, LReLU, pool            (28 → 7)
    cifar10: conv3 128 ·pool, conv3 256, conv3 256 ·pool, conv3 128 ·pool    (32 → 4)
    """
    pool = nn.MaxPool2d(2)
    if get_profile(profile).network == "fmnist":
        w = backbones.SMALL_FMNIST_WIDTH if narrow else backbones.FMNIST_WIDTH
        return nn.Sequential(*_conv_block(channels, w, 5), pool, *_conv_block(w, w, 5), nn.MaxPool2d(2))
    a, b, c = backbones.SMALL_CIFAR10_WIDTHS if narrow else backbones.CIFAR10_WIDTHS
    return nn.Sequential(*_conv_block(channels, a, 3), pool, *_conv_block(a, b, 3),
                         *_conv_block(b, b, 3), nn.MaxPool2d(2), *_conv_block(b, c, 3), nn.MaxPool2d(2))


class HSCNet(nn.Module):
    """φ: standardise → convolutional features → flatten → Linear → LeakyReLU → Linear(rep_dim).

    The hypersphere centre c of eq. (1) is the bias of the last Linear layer (paper sec. 3: "the
    center c corresponds to the bias term in the last layer of our networks"), so φ(x) is the
    offset from the centre and h(φ(x)) the anomaly score."""

    def __init__(self, standardise: nn.Module, features: nn.Module, flat: int, hidden: int, rep_dim: int,
                 pool: nn.Module | None = None):
        super().__init__()
        self.standardise = standardise
        self.features = features
        self.pool = pool if pool is not None else nn.Identity()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.LeakyReLU(LEAK), nn.Linear(hidden, rep_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(self.standardise(x))))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """The HSC anomaly score h(φ(x)) per image, shape (B,)."""
        return pseudo_huber(self(x))


#: VGG head: adaptive average pooling to 7×7 as torchvision's VGG does before its classifier.
VGG_POOL = 7


def build_network(profile: str, images: torch.Tensor, hidden: int, rep_dim: int, pretrained: bool,
                  weights: str | None, small: bool = False) -> tuple[HSCNet, str]:
    """The network for a profile, sized on the training images; returns it and the weights id.
    small: the narrow 28/32 px conv stacks (no effect on VGG, whose widths the weights fix)."""
    channels = images.shape[1]
    if get_profile(profile).network != "vgg":
        mean, std = channel_statistics(images)
        features = small_features(profile, channels, narrow=small)
        with torch.no_grad():
            flat = features.eval()(torch.zeros(1, *images.shape[1:])).numel()
        return HSCNet(Standardise(mean, std), features, flat, hidden, rep_dim), "none"
    vgg, weights_id = backbones.vgg11_bn_features(pretrained=pretrained, weights=weights)
    frozen = backbones.FROZEN_LAYERS
    features = nn.Sequential(backbones.freeze(vgg[:frozen]), vgg[frozen:])
    standardise = Standardise(backbones.IMAGENET_MEAN, backbones.IMAGENET_STD)
    net = HSCNet(standardise, features, 512 * VGG_POOL * VGG_POOL, hidden, rep_dim,
                 pool=nn.AdaptiveAvgPool2d(VGG_POOL))
    return net, weights_id


def cam_layer(model: HSCNet) -> nn.Module:
    """The last activation module of the network's convolutional features (the layer Grad-CAM
    explains: the deepest feature maps that still have a spatial layout, before the last pool)."""
    activations = [m for m in model.features.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU))]
    return activations[-1]


# -- the method --------------------------------------------------------------------------------
class GradSaliency(DeepMethod):
    """HSC with fully connected layers, explained by input gradients (FCDD paper, sec. 4: the
    "Grad" baseline; HSC of Ruff et al., 2020a; gradients after Simonyan et al., 2013).

    Network per profile: "fmnist" (28 px) and "cifar10" (32 px) use the convolutional stacks of
    the paper's nets (appendix D) followed by two fully connected layers; every other profile
    ("imagenet", "voc", "mvtec") uses torchvision's full VGG11-BN `features` (from
    `xadbench.backbones`, the first FROZEN_LAYERS modules frozen with their BatchNorm statistics,
    as for FCDD), 7×7 adaptive average pooling and two fully connected layers. The last layer's
    bias is the hypersphere centre c (paper sec. 3). Inputs stay in [0, 1]: the model
    standardises them (ImageNet statistics for VGG, the nominal training set's per-channel
    statistics for the small nets).

    Training: HSC loss, paper eq. (1) (`hsc_loss`), with the paper's augmentation for the profile
    and online anomaly mixing (each nominal sample replaced by an anomaly with probability 0.5).
    Without any anomalies (no confetti, no OE, no defects) the objective has the trivial solution
    φ ≡ c, so `fit` warns.

    Score: h(φ(x)). Heatmap (raw; the runner applies the shared Gaussian blur, paper sec. 4):
    the attribution of the score to the input pixels, computed with Captum, made absolute and
    reduced over colour channels by the MAXIMUM, as Simonyan et al. (2013) do for saliency maps:
    - "saliency": captum.attr.Saliency(abs=True): |∂h/∂x|.
    - "integrated_gradients": captum.attr.IntegratedGradients with a black image (all zeros in
      [0, 1] input space) as baseline, `ig_steps` Gauss-Legendre steps, batched internally by
      `batch_size`; the absolute attribution is reduced.
    - "smoothgrad": captum.attr.NoiseTunnel(Saliency) with nt_type="smoothgrad": the mean of
      |∂h/∂x| over `smooth_samples` copies with Gaussian noise of std `smooth_sigma` (in [0, 1]
      units; SmoothGrad suggests 10–20 % of the input range). Each image's noise is drawn with torch's RNG
      reseeded to `noise_seed` inside `torch.random.fork_rng` (the caller's RNG state is
      restored), so a map depends only on its image and predict is repeatable.
    - "gradcam": captum.attr.LayerGradCam on the last activation of the convolutional features
      (`cam_layer`: VGG11-BN's last ReLU, before the final pool; the small nets' last LeakyReLU):
      ReLU(Σ_k α_k A^k) with α_k the spatial mean of ∂h/∂A^k (Selvaraju et al., eq. 1–2),
      upsampled bilinearly to the input (captum's LayerAttribution.interpolate, as the paper
      does); the shared blur then applies as for the other attributions.

    On a centred object such as MVTec-AD's bottle, pooled pixel AUC rewards a centre prior; read
    these maps against the `centre` reference (docs/results.md).

    Hyperparameters: profile; attribution; hidden and rep_dim (fully connected widths: hidden
    layer and the output vector φ(x)); epochs, batch_size, optimizer, lr, weight_decay, schedule,
    passes_per_epoch (training loop); ig_steps, smooth_samples, smooth_sigma, noise_seed
    (attributions); pretrained and weights (VGG backbone, as for FCDD; unused by the small nets);
    small (the 28/32 px conv stacks at FCDD's narrow CPU widths, a quarter of the paper's; no
    effect on VGG); device.
    """

    display_name = "Grad"
    supervision = "labels"
    maps_smoothed = False
    # One seed's numbers swing by ±0.1 per class between seeds and thread counts (docs/reproducibility.md).
    seed_sensitive = True
    parameter_constraints = {
        **DeepMethod.parameter_constraints,
        "attribution": OneOf(ATTRIBUTIONS),
        "hidden": Interval(int, 1),
        "rep_dim": Interval(int, 1),
        "ig_steps": Interval(int, 1),
        "smooth_samples": Interval(int, 1),
        "smooth_sigma": Interval(float, 0, closed="neither"),
        "noise_seed": Check(check_seed),
    }

    def __init__(
        self,
        profile: str = "mvtec",
        attribution: str = "saliency",
        hidden: int = 256,
        rep_dim: int = 64,
        epochs: int = 10,
        batch_size: int = 32,
        optimizer: str = "sgd",
        lr: float = 1e-2,
        weight_decay: float = 1e-4,
        schedule: str = "exponential:0.985",
        passes_per_epoch: int = 1,
        ig_steps: int = 16,
        smooth_samples: int = 8,
        smooth_sigma: float = 0.15,
        noise_seed: int = 0,
        pretrained: bool = True,
        weights: str | None = None,
        small: bool = False,
        device: str = "auto",
        seed: int | None = 0,
    ):
        self.profile = profile
        self.attribution = attribution
        self.hidden = hidden
        self.rep_dim = rep_dim
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.passes_per_epoch = passes_per_epoch
        self.ig_steps = ig_steps
        self.smooth_samples = smooth_samples
        self.smooth_sigma = smooth_sigma
        self.noise_seed = noise_seed
        self.pretrained = pretrained
        self.weights = weights
        self.small = small
        self.device = device
        self.seed = seed

    @classmethod
    def preset_overrides(cls, preset: str, profile: str) -> dict[str, Any]:
        """"paper": the profile's training schedule (appendix E, as FCDD), 32 IG steps, 50
        SmoothGrad samples (Smilkov et al.'s suggestion). "cpu": a few CPU minutes for a
        MVTec-AD class of ~200 images at 128 px; 16 IG steps, 8 SmoothGrad samples; the 28/32 px
        conv stacks at FCDD's narrow widths (`small`), as FCDD's cpu preset does; MVTec-AD trains
        with FCDD's optimiser and a 10x larger rate for 10 epochs, the other profiles with Adam
        without decay for 20 epochs (docs/results.md)."""
        check_preset(preset)
        params: dict[str, Any] = {"attribution": "saliency", "small": preset == "cpu", "smooth_sigma": 0.15}
        if preset == "paper":
            return {**params, "hidden": 512, "rep_dim": 128, "ig_steps": 32, "smooth_samples": 50}
        params.update(hidden=256, rep_dim=64, ig_steps=16, smooth_samples=8)
        if profile == "mvtec":
            return {**params, "epochs": 10, "batch_size": 32, "optimizer": "sgd", "lr": 1e-2,
                    "weight_decay": 1e-4, "schedule": "exponential:0.985"}
        return {**params, "epochs": 20, "batch_size": 64, "optimizer": "adam", "lr": 1e-3,
                "weight_decay": 1e-6, "schedule": "none"}

    # -- training -----------------------------------------------------------------------------
    def _check_attribution(self) -> None:
        if self.attribution not in ATTRIBUTIONS:
            raise XadError(f"unknown attribution {self.attribution!r}; known: {', '.join(ATTRIBUTIONS)}")

    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "GradSaliency":
        self._check_attribution()
        get_profile(self.profile)
        if not (train.confetti or len(train.anomalies)):
            warnings.warn("GradSaliency (HSC) got no anomalies to train with (no confetti, OE or defects): "
                          "the HSC objective then collapses towards the centre", UserWarning, stacklevel=2)
        images = stack_images(train.nominal)
        built = {}

        def build() -> HSCNet:
            net, built["weights"] = build_network(self.profile, images, self.hidden, self.rep_dim,
                                                  self.pretrained, self.weights, self.small)
            return net

        def make_loss(model: HSCNet):
            def loss_fn(x: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
                return hsc_loss(model.score(x), labels)
            return loss_fn

        model, self.losses_ = self.train_network(build, make_loss, train, self.profile, on_epoch)
        for p in model.parameters():  # attributions need input gradients only
            p.requires_grad_(False)
        self.input_shape_ = tuple(int(s) for s in images.shape[1:])
        self.weights_used_ = built["weights"]
        self.model_ = model
        return self

    # -- checkpoints and randomisation ----------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Hyperparameters, the network's state dict (on the CPU) and the fitted attributes."""
        self._check_fitted("model_")
        return {"params": self.get_params(), "input_shape": list(self.input_shape_), "losses": list(self.losses_),
                "weights_used": self.weights_used_,
                "model": {name: t.detach().cpu() for name, t in self.model_.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "GradSaliency":
        model = cls(**state["params"])
        shape = tuple(state["input_shape"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the random init the saved weights replace
            net, _ = build_network(model.profile, torch.zeros(2, *shape), model.hidden, model.rep_dim,
                                   pretrained=False, weights=None, small=model.small)
        net.load_state_dict(state["model"])
        for p in net.parameters():
            p.requires_grad_(False)
        model.model_ = net.to(resolve_device(model.device)).to(memory_format=torch.channels_last).eval()
        model.input_shape_ = shape
        model.losses_ = list(state["losses"])
        model.weights_used_ = state["weights_used"]
        return model

    def randomised(self, cascade_step: int | None) -> "GradSaliency":
        """A copy with the `cascade_step` layers nearest the output (the fully connected head
        first; None: every layer, the frozen pretrained ones included) re-initialised; see
        `Method.randomised`."""
        return randomised_copy(self, "model_", cascade_step)

    # -- inference ----------------------------------------------------------------------------
    def _attribute(self, x: torch.Tensor) -> torch.Tensor:
        """Channel-reduced absolute attribution (B, H, W) of the score for a batch, via Captum."""
        from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

        forward = self.model_.score
        x = x.detach().requires_grad_()  # Captum wants it; the caller's tensor is left untouched
        if self.attribution == "saliency":
            attr = Saliency(forward).attribute(x, abs=True)
        elif self.attribution == "integrated_gradients":
            attr = IntegratedGradients(forward).attribute(
                x, baselines=torch.zeros_like(x), n_steps=self.ig_steps,
                internal_batch_size=max(self.batch_size, 1)).abs()
        elif self.attribution == "gradcam":
            cam = LayerGradCam(forward, cam_layer(self.model_)).attribute(x, relu_attributions=True)
            attr = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")
        else:
            tunnel = NoiseTunnel(Saliency(forward))
            parts = []
            for i in range(len(x)):  # per image, same noise seed: a map depends on its image only
                with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                    torch.manual_seed(self.noise_seed)
                    parts.append(tunnel.attribute(
                        x[i : i + 1], nt_type="smoothgrad", nt_samples=self.smooth_samples,
                        nt_samples_batch_size=max(self.batch_size, 1), stdevs=self.smooth_sigma, abs=True))
            attr = torch.cat(parts)
        return attr.amax(dim=1)

    def _score_and_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            score = self.model_.score(x)
        return score, self._attribute(x)

    def _check_input(self, images: torch.Tensor) -> None:
        self._check_fitted("model_")
        if tuple(images.shape[1:]) != self.input_shape_:
            raise XadError(f"GradSaliency was fitted on images {self.input_shape_}, got {tuple(images.shape[1:])}")

    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_input(images)
        self._check_attribution()
        device = next(self.model_.buffers()).device
        score, amap = predict_in_batches(self._score_and_map, images, max(self.batch_size, 1), device)
        return Prediction(score=score.numpy().astype(np.float32), anomaly_map=amap.numpy().astype(np.float32))

    def score_images(self, images: torch.Tensor) -> np.ndarray:
        """The HSC scores alone, without the attribution's backward passes."""
        self._check_input(images)
        device = next(self.model_.buffers()).device
        with torch.inference_mode():
            score, _ = predict_in_batches(lambda x: (self.model_.score(x), x[:, 0]), images,
                                          max(self.batch_size, 1), device)
        return score.numpy().astype(np.float32)


#: `grad-ig`: the same model explained by Integrated Gradients.
GRAD_IG = Variant(GradSaliency, display_name="Grad-IG", attribution="integrated_gradients")
#: `grad-smooth`: the same model explained by SmoothGrad (NoiseTunnel over Saliency).
GRAD_SMOOTH = Variant(GradSaliency, display_name="Grad-Smooth", attribution="smoothgrad")
#: `grad-cam`: the same model explained by Grad-CAM (LayerGradCam on the last conv activation).
GRAD_CAM = Variant(GradSaliency, display_name="Grad-CAM", attribution="gradcam")
