"""The training every deep method shares: optimiser and schedule by name, the paper's
augmentation per data-set profile (appendix E), online anomaly replacement, batched inference,
and `DeepMethod`, the base of the methods that train a network with it."""
from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from xadbench.anomalies import AnomalyMixer
from xadbench.method import EpochCallback, Method, resolve_device
from xadbench.options import check_device, check_seed
from xadbench.profiles import PROFILES, get_profile, training_params
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


def _jitter(strength: float) -> v2.ColorJitter:
    """Brightness, contrast and saturation jitter by factors in [1 - s, 1 + s]."""
    return v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength)


@functools.lru_cache(maxsize=None)
def augmentation(profile: str, size: tuple[int, int]) -> v2.Compose:
    """The profile's `Augmentation` (appendix E, `xadbench.profiles`) for images of `size` (H, W)
    as a torchvision `transforms.v2` pipeline, in its order: colour jitter (one strength picked at
    random), random crop after zero padding or upscaling, horizontal flip, Gaussian noise. Masks
    (`tv_tensors.Mask`) follow the crops, resizes (nearest neighbour) and flips; jitter and noise
    leave them alone."""
    steps = get_profile(profile).augmentation
    jitter = [v2.RandomChoice([_jitter(s) for s in steps.jitter])] if steps.jitter else []
    crop = []
    if steps.crop:
        crop += [v2.Pad(steps.pad)] if steps.pad else []
        if steps.resize != 1.0:
            crop.append(v2.Resize((round(size[0] * steps.resize), round(size[1] * steps.resize)), antialias=True))
        crop.append(v2.RandomCrop(size))
    pipeline = jitter + crop if steps.jitter_first else crop + jitter
    pipeline += [v2.RandomHorizontalFlip()] if steps.flip else []
    if steps.noise:
        noise = v2.GaussianNoise(sigma=steps.noise, clip=False)
        pipeline.append(noise if steps.noise_chance >= 1 else v2.RandomApply([noise], p=steps.noise_chance))
    return v2.Compose(pipeline)


def augment(images: torch.Tensor, masks: torch.Tensor, profile: str,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """`augmentation(profile)` on a batch (B, C, H, W) with its masks (B, H, W): one random draw
    (crop position, flip, jitter) per batch, so the draws vary from batch to batch; image by image,
    the transforms' per-call overhead dominates for small images (bench/augment.py times both).
    torchvision draws from torch's global generator, so it runs under a forked global state seeded
    from `generator`: the draws depend on `generator` alone and the caller's state is untouched."""
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    cuda = images.device.type == "cuda"
    with torch.random.fork_rng(devices=[images.device] if cuda else []):
        torch.random.default_generator.manual_seed(seed)
        if cuda:  # GaussianNoise draws on the images' device
            with torch.cuda.device(images.device):
                torch.cuda.manual_seed(seed)
        image, mask = augmentation(profile, tuple(images.shape[-2:]))(tv_tensors.Image(images), tv_tensors.Mask(masks))
    return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)


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
    generator: torch.Generator,
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
    Every random draw (batch order, anomaly mixing, augmentation) comes from `generator`, a CPU
    generator; on another device the augmentation draws from a generator there, seeded from it.
    """
    nominal = stack_images(train.nominal).to(device)
    mixer = AnomalyMixer(train, p=anomaly_p, generator=generator)
    on_device = generator
    if device.type != "cpu":
        seed = int(torch.randint(2**62, (1,), generator=generator))
        on_device = torch.Generator(device).manual_seed(seed)
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
            order = torch.randperm(len(nominal), generator=generator)
            for b in range(batches_per_pass):
                index = order[b * batch_size : (b + 1) * batch_size].to(device)
                images, labels, masks = mixer.mix(nominal[index])
                if profile is not None:
                    images, masks = augment(images, masks, profile, on_device)
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


#: The keywords of `fit_loop` every DeepMethod takes in its __init__ (the profile's schedule).
TRAINING_PARAMS = ("epochs", "batch_size", "optimizer", "lr", "weight_decay", "schedule", "passes_per_epoch")


class DeepMethod(Method):
    """Base of the methods that train a network with `fit_loop` (FCDD and the gradient and
    autoencoder baselines of the paper, section 4).

    What it provides, and what `xadbench.testing` checks for every subclass:
    - the training keywords TRAINING_PARAMS, `profile`, `seed` and `device`, validated by
      `parameter_constraints` (a subclass adds its own constraints to these); a subclass lists
      them in its own `__init__` with its defaults, since the contract reads the hyperparameters
      from that signature;
    - `preset`: the data-set profile's training schedule for the preset (paper appendix E, or
      its cpu version, `xadbench.profiles`) with the method's `preset_overrides` on top;
    - `train_network`: one `fit_loop` run under the method's own seed: torch's global RNG is
      forked (the caller's state is restored afterwards) and seeded with `seed` while the network
      is built, and every draw of training (batch order, anomaly mixing, confetti,
      augmentation) comes from a torch.Generator forked from that seeded state, so a fit
      depends on `seed` alone and never on the caller's RNG state;
    - `weights_used_` after fit and after `from_checkpoint`: the id of the network's initial
      weights ("file:<name> sha256:<12 hex>", "torchvision:IMAGENET1K_V1" or "none").
    """

    parameter_constraints: ClassVar[dict[str, Any]] = {
        **TRAINING_CONSTRAINTS,
        "profile": OneOf(tuple(PROFILES)),
        "seed": Check(lambda seed: seed is None or check_seed(seed)),
        "device": Check(check_device),
    }
    weights_used_: str

    @classmethod
    def preset(cls, preset: str, profile: str) -> dict[str, Any]:
        """The profile's schedule for `preset` and `profile` itself, updated by `preset_overrides`."""
        return {"profile": profile, **training_params(profile, preset), **cls.preset_overrides(preset, profile)}

    @classmethod
    def preset_overrides(cls, preset: str, profile: str) -> dict[str, Any]:
        """The method's own preset values for a profile (hyperparameters beyond training, and
        training values where the method differs from the profile's schedule)."""
        return {}

    def training_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in TRAINING_PARAMS}

    def train_network(self, build: Callable[[], torch.nn.Module], make_loss: Callable[[Any], LossFn],
                      train: TrainData, augment_profile: str | None,
                      on_epoch: EpochCallback | None = None) -> tuple[Any, list[float]]:
        """Build the network (`build()`, on the CPU), move it to the device in channels-last
        layout, train it with `fit_loop` on `make_loss(net)` under the method's seed (see the
        class docstring) and return it in eval mode with the loss per epoch. `augment_profile`:
        the profile whose augmentation applies (None: none)."""
        device = resolve_device(self.device)
        cuda = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, enabled=self.seed is not None):
            if self.seed is not None:
                torch.manual_seed(self.seed)
            net = build().to(device=device, memory_format=torch.channels_last)
            generator = torch.Generator()
            if self.seed is None:
                generator.seed()
            else:
                generator.set_state(torch.get_rng_state())
            losses = fit_loop(net.parameters(), make_loss(net), train, device=device, generator=generator,
                              profile=augment_profile, on_epoch=on_epoch, train_mode=net.train,
                              **self.training_params())
        return net.eval(), losses
