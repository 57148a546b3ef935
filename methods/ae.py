"""L2 autoencoder baseline: the pixel-wise reconstruction error as the explanation.

The FCDD paper (Liznerski et al., ICLR 2021, sec. 4 and 4.1 "Baseline Explanations") compares
FCDD with "autoencoders (Bergmann et al., 2019) where we directly use the pixel-wise
reconstruction error as an explanation heatmap", and notes that an AE cannot use Outlier Exposure
or labelled anomalies. For MVTec-AD the architecture follows the AE-L2 baseline of the MVTec-AD
paper (Bergmann et al., CVPR 2019; network of Bergmann et al., VISAPP 2019): strided 4×4
convolutions with LeakyReLU(0.2) down to a fully connected bottleneck (a convolution whose kernel
covers the whole remaining map, giving a 1×1 latent of `latent` channels, 100 in the paper), and
the mirror image of it with transposed convolutions up. The same design serves every profile;
only the number of stride-2 stages follows the input size (see `AutoEncoder` for the rule).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from xadbench.errors import XadError
from xadbench.layers import Standardise, channel_statistics
from xadbench.method import EpochCallback, resolve_device
from xadbench.profiles import check_preset
from xadbench.sanity import randomised_copy
from xadbench.training import DeepMethod, predict_in_batches
from xadbench.types import Prediction, TrainData, stack_images
from xadbench.validation import Interval

#: Stride-2 stages stop once the map would drop below this side length (8 at 128 px, as AE-L2).
MIN_BOTTLENECK_SIDE = 8
LEAK = 0.2


def stage_channels(width: int, stages: int) -> list[int]:
    """Channels after each stride-2 stage: width, width, 2·width, 4·width, 4·width, ...
    (AE-L2 at 128 px with width 32: 32, 32, 64, 128)."""
    return [width * min(2 ** max(i - 1, 0), 4) for i in range(stages)]


def bottleneck_plan(height: int, width: int) -> tuple[int, tuple[int, int]]:
    """How many stride-2 stages an input of this size gets, and the map size they leave.

    A side is halved while both sides are even and the smaller one is above
    MIN_BOTTLENECK_SIDE: 128 → 8 (4 stages), 256 → 8 (5), 224 → 7 (5), 64 → 8 (3), 32 → 8 (2),
    28 → 7 (2)."""
    stages = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) > MIN_BOTTLENECK_SIDE:
        height, width, stages = height // 2, width // 2, stages + 1
    return stages, (height, width)


class ConvAutoEncoder(nn.Module):
    """Encoder: stride-2 4×4 convolutions (each but the first followed by a 3×3 one), two 3×3
    convolutions narrowing the channels, and a convolution over the whole remaining map to the
    1×1 latent code (no activation). Decoder: the mirror image with transposed convolutions, a
    sigmoid at the end so reconstructions live in [0, 1] like the inputs."""

    def __init__(self, channels: int, size: tuple[int, int], width: int, latent: int,
                 mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        stages, final = bottleneck_plan(*size)
        chans = stage_channels(width, stages)
        act = lambda: nn.LeakyReLU(LEAK, inplace=True)  # noqa: E731
        self.standardise = Standardise(mean, std)

        enc: list[nn.Module] = []
        previous = channels
        for i, c in enumerate(chans):
            enc += [nn.Conv2d(previous, c, 4, stride=2, padding=1), act()]
            if i > 0:
                enc += [nn.Conv2d(c, c, 3, padding=1), act()]
            previous = c
        top = chans[-1] if chans else width
        narrow = max(top // 2, width)
        enc += [nn.Conv2d(previous, narrow, 3, padding=1), act(),
                nn.Conv2d(narrow, width, 3, padding=1), act(),
                nn.Conv2d(width, latent, final)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.ConvTranspose2d(latent, width, final), act(),
                                nn.ConvTranspose2d(width, narrow, 3, padding=1), act(),
                                nn.ConvTranspose2d(narrow, top, 3, padding=1), act()]
        previous = top
        for i in reversed(range(len(chans))):
            if i > 0:
                dec += [nn.ConvTranspose2d(previous, chans[i], 3, padding=1), act(),
                        nn.ConvTranspose2d(chans[i], chans[i - 1], 4, stride=2, padding=1), act()]
                previous = chans[i - 1]
        if chans:
            dec += [nn.ConvTranspose2d(previous, channels, 4, stride=2, padding=1)]
        else:
            dec += [nn.ConvTranspose2d(previous, channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of x (B, C, H, W) in [0, 1]."""
        return torch.sigmoid(self.decoder(self.encoder(self.standardise(x))))


def reconstruction_error(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(score (B,), map (B, H, W)): per-pixel squared error averaged over channels; score = its
    mean over the pixels."""
    amap = (model(images) - images).pow(2).mean(dim=1)
    return amap.mean(dim=(1, 2)), amap


class AutoEncoder(DeepMethod):
    """L2 convolutional autoencoder (the FCDD paper's "AE" baseline, sec. 4 and 4.1; AE-L2 of
    Bergmann et al., 2019, for MVTec-AD).

    Trained on nominal images only with the mean squared reconstruction error. It cannot use
    anomalies (paper sec. 4.1), so `supervision = "none"` and `fit` drops any anomalies or
    confetti a TrainData might still carry. Heatmap: per-pixel squared reconstruction error
    averaged over channels, at input resolution (raw: the runner applies the shared Gaussian blur
    to it, paper sec. 4). Score: the mean of that map.

    Hyperparameters:
    profile: data set profile ("fmnist", "cifar10", "imagenet", "voc", "mvtec"): selects the
        paper's augmentation (appendix E) when `augment`.
    width: channels of the first stage (32 in AE-L2); later stages 2× and 4× that.
    latent: channels of the 1×1 bottleneck code (100 in AE-L2).
    epochs, batch_size, optimizer ("adam"/"sgd"), lr, weight_decay, schedule, passes_per_epoch:
        the training loop's (xadbench.training.fit_loop).
    augment: apply the profile's training augmentation.
    device: "auto" (CUDA when available), "cpu", "cuda", ...

    The number of stride-2 stages follows the input: sides are halved while even and above 8
    (`bottleneck_plan`), then one convolution over the remaining map makes the latent code.
    Inputs are standardised inside the model with the nominal training set's per-channel mean
    and std; reconstructions and the error are in [0, 1] image space.

    FCDD's crop and jitter augmentation (`augment=True`) breaks this AE on MVTec-AD
    (docs/results.md), so the cpu presets and the MVTec-AD paper preset train without it.
    """

    display_name = "AE"
    supervision = "none"
    maps_smoothed = False
    parameter_constraints = {
        **DeepMethod.parameter_constraints,
        "width": Interval(int, 1),
        "latent": Interval(int, 1),
    }

    def __init__(
        self,
        profile: str = "mvtec",
        width: int = 32,
        latent: int = 100,
        epochs: int = 40,
        batch_size: int = 16,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        schedule: str = "exponential:0.95",
        passes_per_epoch: int = 1,
        augment: bool = False,
        device: str = "auto",
        seed: int | None = 0,
    ):
        self.profile = profile
        self.width = width
        self.latent = latent
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.passes_per_epoch = passes_per_epoch
        self.augment = augment
        self.device = device
        self.seed = seed

    @classmethod
    def preset_overrides(cls, preset: str, profile: str) -> dict[str, Any]:
        """"paper": the profile's training schedule (appendix E), with the profile's augmentation,
        except for MVTec-AD, where the paper's numbers are AE-L2's (Bergmann et al., 2019): its
        optimiser (Adam, lr 2e-4, weight decay 1e-5, no decay schedule) and no augmentation.
        "cpu": a few CPU minutes for a MVTec-AD class of ~200 images at 128 px, without
        augmentation (FCDD's crop and jitter break this AE; docs/results.md)."""
        params: dict[str, Any] = {"width": 32, "latent": 100}
        if check_preset(preset) == "paper":
            if profile == "mvtec":
                return {**params, "optimizer": "adam", "lr": 2e-4, "weight_decay": 1e-5, "schedule": "none",
                        "augment": False}
            return {**params, "augment": True}
        return {**params, "epochs": 40, "batch_size": 16, "optimizer": "adam", "lr": 1e-3, "weight_decay": 1e-5,
                "schedule": "exponential:0.95", "passes_per_epoch": 1, "augment": False}

    # -- training -----------------------------------------------------------------------------
    def fit(self, train: TrainData, on_epoch: EpochCallback | None = None) -> "AutoEncoder":
        nominal_only = TrainData(nominal=train.nominal)  # an AE cannot use anomalies (sec. 4.1)
        images = stack_images(train.nominal)
        channels, height, width = images.shape[1:]

        def build() -> ConvAutoEncoder:
            mean, std = channel_statistics(images)
            return ConvAutoEncoder(channels, (height, width), self.width, self.latent, mean, std)

        def make_loss(model: ConvAutoEncoder):
            def loss_fn(x: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
                return F.mse_loss(model(x), x)
            return loss_fn

        model, self.losses_ = self.train_network(build, make_loss, nominal_only,
                                                 self.profile if self.augment else None, on_epoch)
        self.input_shape_ = (int(channels), int(height), int(width))
        self.weights_used_ = "none"
        self.model_ = model
        return self

    # -- checkpoints and randomisation ----------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Hyperparameters, the network's state dict (on the CPU) and the fitted attributes."""
        self._check_fitted("model_")
        return {"params": self.get_params(), "input_shape": list(self.input_shape_), "losses": list(self.losses_),
                "model": {name: t.detach().cpu() for name, t in self.model_.state_dict().items()}}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> "AutoEncoder":
        model = cls(**state["params"])
        channels, height, width = state["input_shape"]
        net = ConvAutoEncoder(channels, (height, width), model.width, model.latent,
                              torch.zeros(channels), torch.ones(channels))
        net.load_state_dict(state["model"])  # the standardisation statistics too
        model.model_ = net.to(resolve_device(model.device)).to(memory_format=torch.channels_last).eval()
        model.input_shape_ = (channels, height, width)
        model.losses_ = list(state["losses"])
        model.weights_used_ = "none"
        return model

    def randomised(self, cascade_step: int | None) -> "AutoEncoder":
        """A copy with the `cascade_step` layers nearest the output (the decoder's last ones; None:
        every layer) re-initialised; see `Method.randomised`."""
        return randomised_copy(self, "model_", cascade_step)

    # -- inference ----------------------------------------------------------------------------
    def predict(self, images: torch.Tensor) -> Prediction:
        self._check_fitted("model_")
        if tuple(images.shape[1:]) != self.input_shape_:
            raise XadError(f"AutoEncoder was fitted on images {self.input_shape_}, got {tuple(images.shape[1:])}")
        device = next(self.model_.parameters()).device
        with torch.inference_mode():
            score, amap = predict_in_batches(lambda x: reconstruction_error(self.model_, x),
                                             images, max(self.batch_size, 1), device)
        return Prediction(score=score.numpy().astype(np.float32), anomaly_map=amap.numpy().astype(np.float32))
