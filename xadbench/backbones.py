"""Pretrained backbones shared by every method built on one (FCDD's MVTec-AD/ImageNet/VOC net,
the gradient baseline), and the widths of appendix D's nets trained from scratch.

VGG11-BN (Simonyan and Zisserman, 2015, with batch norm) as torchvision builds it: `features`
is a Sequential of 29 modules; FCDD (paper appendix D) keeps `features[:21]` (up to the second
512-conv and its ReLU) and freezes `features[:FROZEN_LAYERS]` (the ten layers before the two
512-convs, paper section 4.2).

Weights come from a local file (a state dict with torchvision's `features.*` keys, e.g. the
project's stand-in `vgg11_bn_features_imagenette.pt`) or from torchvision's weights API, which
reads its cache and downloads into it only when download.pytorch.org can be reached; offline
with an empty cache it raises one clear `XadError` instead of hanging on a download.
"""
from __future__ import annotations

import hashlib
import os
import threading
import warnings
from collections.abc import Mapping
from typing import Any
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from xadbench.errors import XadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: features[:15] of torchvision's vgg11_bn: conv64 … conv256, conv256 with their BN, ReLU and pools.
FROZEN_LAYERS = 15
TORCHVISION_WEIGHTS = "IMAGENET1K_V1"
#: VGG11 ("configuration A") with batch norm: channels, and "M" for a 2×2 max pool.
VGG11_LAYOUT = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")
NO_WEIGHTS_HINT = "pass --weights PATH (a state dict with torchvision's features.* keys) or --no-pretrained"
DOWNLOAD_PROBE_TIMEOUT_S = 3.0
#: Channel widths of appendix D's nets trained from scratch (28 px: two convs of 128; 32 px:
#: 128, 256, 128) and of their narrow CPU variants (a quarter), which FCDD and the gradient
#: baseline share so that both train nets of one size.
FMNIST_WIDTH = 128
CIFAR10_WIDTHS = (128, 256, 128)
SMALL_FMNIST_WIDTH = 32
SMALL_CIFAR10_WIDTHS = (32, 64, 32)


class Frozen(nn.Module):
    """A module whose parameters are fixed and which stays in eval mode for good.

    `train(True)` on any parent leaves the wrapped module in eval mode, so its batch norm keeps
    its running statistics (the reference FCDD code lets them drift; we do not). The forward
    pass builds no autograd graph unless the input itself requires a gradient (a gradient
    attribution w.r.t. the input must still flow through, the parameters stay fixed either way).
    """

    def __init__(self, module: nn.Module):
        super().__init__()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module.eval()

    def train(self, mode: bool = True) -> "Frozen":
        self.training = mode
        self.module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return self.module(x)
        with torch.no_grad():
            return self.module(x)


def freeze(module: nn.Module) -> Frozen:
    """`module` wrapped in `Frozen`: requires_grad False, eval mode kept, no graph when not needed."""
    return module if isinstance(module, Frozen) else Frozen(module)


def vgg_features(layout=VGG11_LAYOUT, in_channels: int = 3) -> nn.Sequential:
    """VGG `features` with batch norm (conv3 p1, BN, ReLU per number; 2×2 max pool per "M"),
    initialised as torchvision initialises VGG (He-normal fan-out convs with zero bias, BN 1/0).
    With the default layout this is torchvision's `vgg11_bn().features`, module for module,
    built without the 130 M-parameter classifier."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        conv = nn.Conv2d(channels, int(item), kernel_size=3, padding=1)
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(conv.bias)
        layers += [conv, nn.BatchNorm2d(int(item)), nn.ReLU(inplace=True)]
        channels = int(item)
    return nn.Sequential(*layers)


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _features_state(state: object, source: str) -> dict[str, torch.Tensor]:
    """The `features.*` entries of a state dict, prefix removed; XadError when it is none."""
    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise XadError(f"{source} is not a state dict (got {type(state).__name__}); expected a dict "
                       "of tensors with torchvision's vgg11_bn features.* keys")
    found = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    if not found:
        some = ", ".join(list(state)[:3]) or "none"
        raise XadError(f"{source} holds no features.* keys (first keys: {some}); expected "
                       "torchvision's vgg11_bn state dict or its features.* part")
    bad = [k for k, v in found.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise XadError(f"{source}: features.{bad[0]} is not a tensor")
    return found


def load_features_state(features: nn.Sequential, state: object, source: str) -> None:
    """Load a state dict's `features.*` part into `features`, strictly; XadError naming the problem."""
    found = _features_state(state, source)
    expected = features.state_dict()
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing features.{missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"unexpected features.{unexpected[0]}" + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
        raise XadError(f"{source} does not fit vgg11_bn features: {'; '.join(parts)}")
    for key, value in expected.items():
        if tuple(found[key].shape) != tuple(value.shape):
            raise XadError(f"{source} does not fit vgg11_bn features: features.{key} has shape "
                           f"{tuple(found[key].shape)}, expected {tuple(value.shape)}")
    features.load_state_dict(found, strict=True)


def _load_file(features: nn.Sequential, path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise XadError(f"weights file {p} does not exist; {NO_WEIGHTS_HINT}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for a bad file
        message = " ".join(str(exc).split())[:200]
        raise XadError(f"weights file {p} cannot be read as a PyTorch state dict "
                       f"({type(exc).__name__}: {message})") from None
    load_features_state(features, state, f"weights file {p}")
    return f"file:{p.name} sha256:{sha256_of(p)[:12]}"


def _reachable(host: str, port: int = 443, timeout: float = DOWNLOAD_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to host:port opens within `timeout` seconds (DNS included: the
    probe runs in a daemon thread, so a hanging resolver cannot hang us)."""
    import socket

    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(result and result[0])


def _torchvision_weights() -> tuple[Any, Path]:
    """torchvision's ImageNet VGG11-BN weights entry and where its cache keeps the file."""
    from torchvision.models import VGG11_BN_Weights

    weights = VGG11_BN_Weights[TORCHVISION_WEIGHTS]
    return weights, Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def _torchvision_state(weights: Any) -> dict[str, torch.Tensor]:
    """The weights' state dict (downloaded into torchvision's cache where missing), as one
    XadError for every way that fails."""
    try:
        return weights.get_state_dict(progress=False)
    except Exception as exc:  # network or file errors of every kind
        message = " ".join(str(exc).split())[:200]
        raise XadError(f"cannot get torchvision's VGG11-BN weights ({type(exc).__name__}: {message}); "
                       f"{NO_WEIGHTS_HINT}") from None


def check_imagenet_weights(fetch: bool) -> None:
    """Raise the one-line XadError `vgg11_bn_features(pretrained=True)` would raise for want of
    torchvision's ImageNet weights: they are not in its cache and the host cannot be reached.
    fetch=True also downloads them into the cache now, so a run resolves them before its first
    job (a dry run only checks)."""
    weights, cached = _torchvision_weights()
    if cached.is_file():
        return
    host = urlparse(weights.url).hostname or "download.pytorch.org"
    if not _reachable(host):
        raise XadError(f"ImageNet weights for VGG11-BN are not in torchvision's cache ({cached}) and "
                       f"{host} cannot be reached to download them; {NO_WEIGHTS_HINT}")
    if fetch:
        _torchvision_state(weights)


def _load_torchvision(features: nn.Sequential) -> str:
    check_imagenet_weights(fetch=False)
    weights, cached = _torchvision_weights()
    load_features_state(features, _torchvision_state(weights), f"torchvision weights {cached.name}")
    return f"torchvision:{TORCHVISION_WEIGHTS}"


def warn_random_init(what: str = "VGG11-BN features") -> None:
    warnings.warn(f"{what} start from random initialisation (pretrained=False), not ImageNet weights as "
                  "in the paper: expect much weaker results", UserWarning, stacklevel=3)


def vgg11_bn_features(pretrained: bool = True, weights: str | None = None) -> tuple[nn.Sequential, str]:
    """torchvision's `vgg11_bn().features` (29 modules) and the id of the weights it holds.

    pretrained=True: weights from the file `weights` when given (id "file:<name> sha256:<12 hex>"),
    else ImageNet weights through torchvision's weights API (id "torchvision:IMAGENET1K_V1").
    pretrained=False: random initialisation with a warning (id "none"); `weights` is ignored
    (with a warning) then. Raises XadError, in one line, for a missing or unfit weights file and
    for missing ImageNet weights when offline.
    """
    features = vgg_features()
    if not pretrained:
        if weights is not None:
            warnings.warn(f"pretrained=False: ignoring weights={weights!r}", UserWarning, stacklevel=2)
        warn_random_init()
        return features, "none"
    if weights is not None:
        return features, _load_file(features, str(weights))
    return features, _load_torchvision(features)


def export_features(out: str | Path) -> str:
    """Write torchvision's ImageNet VGG11-BN `features.*` state dict (from its cache, or downloaded
    when the host is reachable) to `out` for `--weights`; returns the file's sha256."""
    from xadbench.files import atomic_write

    features, _ = vgg11_bn_features(pretrained=True)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    with atomic_write(Path(out), "wb") as handle:
        torch.save(state, handle)
    return sha256_of(out)
