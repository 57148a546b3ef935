"""The training loop every deep method shares: optimiser and schedule by name, the paper's
augmentation per data set profile (appendix E), online anomaly replacement, batched inference."""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from xadbench.anomalies import AnomalyMixer
from xadbench.method import EpochCallback
from xadbench.types import TrainData, stack_images
from xadbench.validation import Check, Interval, OneOf

#: loss(images, labels, masks) -> scalar; labels (B,) 0/1 float, masks (B, H, W) float in [0, 1].
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_optimizer(parameters: Iterable[torch.nn.Parameter], name: str, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """"sgd" is SGD with Nesterov momentum 0.9 (paper: F-MNIST, MVTec-AD); "adam" is Adam."""
    parameters = [p for p in parameters if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: sgd, adam")


def make_scheduler(optimizer: torch.optim.Optimizer, schedule: str) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: "exponential:0.985", "milestones:400,500" (×0.1 at each) or "none"."""
    kind, _, arg = schedule.partition(":")
    if kind == "exponential":
        return torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=float(arg))
    if kind == "milestones":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [int(m) for m in arg.split(",")], gamma=0.1)
    if kind == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    raise ValueError(f"unknown schedule {schedule!r}; use exponential:G, milestones:A,B or none")


def check_schedule(schedule: str) -> None:
    """Raises ValueError for a schedule `make_scheduler` cannot build (parsed by it, on a dummy)."""
    make_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), schedule)


#: Constraints on the keywords of `fit_loop` that every deep method exposes (see
#: xadbench.validation): at least one epoch, pass and image per batch; a positive finite rate.
TRAINING_CONSTRAINTS = {
    "epochs": Interval(int, 1),
    "batch_size": Interval(int, 1),
    "passes_per_epoch": Interval(int, 1),
    "lr": Interval(float, 0, closed="neither"),
    "weight_decay": Interval(float, 0),
    "optimizer": OneOf(("sgd", "adam")),
    "schedule": Check(check_schedule),
}


def _random_crop(images: torch.Tensor, masks: torch.Tensor, pad: int, resize: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop back to the input size after zero padding by `pad` or upscaling by `resize`."""
    height, width = images.shape[-2:]
    if resize != 1.0:
        size = (round(height * resize), round(width * resize))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        masks = F.interpolate(masks[:, None], size=size, mode="nearest")[:, 0]
    if pad:
        images = F.pad(images, (pad, pad, pad, pad))
        masks = F.pad(masks, (pad, pad, pad, pad))
    top = int(torch.randint(images.shape[-2] - height + 1, (1,)))
    left = int(torch.randint(images.shape[-1] - width + 1, (1,)))
    return (images[..., top : top + height, left : left + width],
            masks[..., top : top + height, left : left + width])


def _jitter(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation jitter by factors in [1 - s, 1 + s], per image."""
    n = images.shape[0]

    def factor():
        return 1 + (torch.rand(n, 1, 1, 1, device=images.device) * 2 - 1) * strength

    images = images * factor()
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    images = (images - mean) * factor() + mean
    if images.shape[1] == 3:
        grey = images.mean(dim=1, keepdim=True)
        images = (images - grey) * factor() + grey
    return images.clamp(0, 1)


def augment(images: torch.Tensor, masks: torch.Tensor, profile: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's training pre-processing (appendix E) on a batch, masks moved along.

    fmnist: crop 28 after zero-padding 2, horizontal flip.
    cifar10: colour jitter 0.01, crop after zero-padding 4, flip, Gaussian noise σ=0.001.
    imagenet: as cifar10 but crop 224 of 256 (upscale by 256/224) instead of padding.
    voc: as cifar10 without the crop (it would cut the watermark in the lower left corner).
    mvtec: crop 224 of 240 (upscale by 240/224), jitter 0.04 or 0.0005, noise with chance 0.5.
    """
    flip = profile in ("fmnist", "cifar10", "imagenet", "voc")
    if profile == "fmnist":
        images, masks = _random_crop(images, masks, pad=2, resize=1.0)
    elif profile in ("cifar10", "imagenet", "voc"):
        images = _jitter(images, 0.01)
        if profile == "cifar10":
            images, masks = _random_crop(images, masks, pad=4, resize=1.0)
        elif profile == "imagenet":
            images, masks = _random_crop(images, masks, pad=0, resize=256 / 224)
    elif profile == "mvtec":
        images, masks = _random_crop(images, masks, pad=0, resize=240 / 224)
        images = _jitter(images, 0.04 if float(torch.rand(1)) < 0.5 else 0.0005)
    else:
        raise ValueError(f"no augmentation defined for profile {profile!r}")
    if flip:
        flipped = torch.rand(images.shape[0], device=images.device) < 0.5
        images = torch.where(flipped.view(-1, 1, 1, 1), images.flip(-1), images)
        masks = torch.where(flipped.view(-1, 1, 1), masks.flip(-1), masks)
    if profile in ("cifar10", "imagenet", "voc"):
        images = images + 0.001 * torch.randn_like(images)
    elif profile == "mvtec" and float(torch.rand(1)) < 0.5:
        images = images + 0.001 * torch.randn_like(images)
    return images, masks


def fit_loop(
    parameters: Iterable[torch.nn.Parameter],
    loss_fn: LossFn,
    train: TrainData,
    *,
    epochs: int,
    batch_size: int,
    optimizer: str,
    lr: float,
    weight_decay: float,
    schedule: str,
    device: torch.device,
    profile: str | None = None,
    passes_per_epoch: int = 1,
    anomaly_p: float = 0.5,
    on_epoch: EpochCallback | None = None,
    train_mode: Callable[[], None] | None = None,
) -> list[float]:
    """Minimise `loss_fn` over the nominal images, anomalies mixed in online; returns the mean
    loss per epoch. `profile` selects the augmentation (None: none). One epoch is
    `passes_per_epoch` passes over the nominal set (the paper uses 10 for MVTec-AD).
    `train_mode` puts the model in training mode (called once; e.g. to keep frozen layers in eval).
    """
    nominal = stack_images(train.nominal).to(device)
    mixer = AnomalyMixer(train, p=anomaly_p)
    params = list(parameters)
    opt = make_optimizer(params, optimizer, lr, weight_decay)
    scheduler = make_scheduler(opt, schedule)
    if train_mode is not None:
        train_mode()
    batches_per_pass = math.ceil(len(nominal) / batch_size)
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for _ in range(passes_per_epoch):
            order = torch.randperm(len(nominal))
            for b in range(batches_per_pass):
                index = order[b * batch_size : (b + 1) * batch_size].to(device)
                images, labels, masks = mixer.mix(nominal[index])
                if profile is not None:
                    images, masks = augment(images, masks, profile)
                loss = loss_fn(images.contiguous(memory_format=torch.channels_last), labels, masks)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss.item()} in epoch {epoch + 1}")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(index)
                count += len(index)
        scheduler.step()
        losses.append(total / max(count, 1))
        if on_epoch is not None:
            on_epoch(epoch + 1, epochs, losses[-1])
    return losses


def predict_in_batches(fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
                       batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Run fn(batch) -> (scores (B,), maps (B, H, W)) over images in batches; CPU float32 out."""
    scores, maps = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].to(device).contiguous(memory_format=torch.channels_last)
        score, amap = fn(batch)
        scores.append(score.detach().float().cpu())
        maps.append(amap.detach().float().cpu())
    return torch.cat(scores), torch.cat(maps)
