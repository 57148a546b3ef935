"""Parsing and checks of option values that the command line and the library share: comma lists,
--seeds, --k, --oe-limit, --device and --weights; each bad value is one XadError line naming
the option. The Typer declarations of the options live in `xadbench.cli.options`."""
from __future__ import annotations

from pathlib import Path

from xadbench.errors import XadError


def split_list(value: str | None) -> list[str]:
    """"a, b,,c" → ["a", "b", "c"]; None or "" → []."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


#: numpy's legacy seeding (np.random.seed, which `seeding.seed_everything` calls) takes 0 ... 2**32 - 1.
MAX_SEED = 2**32 - 1


def parse_seeds(value: str) -> tuple[int, ...]:
    """--seeds "0,1,2" → (0, 1, 2), duplicates dropped in order; a one-line error otherwise."""
    try:
        seeds = tuple(int(s) for s in split_list(value))
    except ValueError:
        raise XadError(f"--seeds {value!r}: use comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds:
        raise XadError("--seeds is empty; use e.g. --seeds 0,1,2")
    for seed in seeds:
        try:
            check_seed(seed)
        except ValueError as exc:
            raise XadError(f"--seeds {value!r}: {exc}") from None
    return tuple(dict.fromkeys(seeds))


def check_seed(seed: int) -> None:
    """A seed the runner can hand to random, numpy and torch: an integer in 0 ... MAX_SEED."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed {seed!r} is out of range; seeds are integers in 0 ... {MAX_SEED}")


def check_k(k: int) -> int:
    """--k, the real labelled anomalies per category, is at least 0."""
    if k < 0:
        raise XadError(f"--k {k}: the number of labelled anomalies per category must be >= 0")
    return k


def parse_oe_limit(value: str) -> int | None:
    """--oe-limit: a number of Outlier Exposure images >= 1, or "all" (None)."""
    if value == "all":
        return None
    try:
        limit = int(value)
    except ValueError:
        raise XadError(f"--oe-limit {value!r}: use a number of images >= 1 or 'all'") from None
    if limit < 1:
        raise XadError(f"--oe-limit {value}: use a number of images >= 1 or 'all' (leave out --oe for no OE)")
    return limit


def check_device(device: str) -> str:
    """--device names a device torch has here: auto, cpu, cuda, cuda:N (N < the GPU count), mps."""
    import torch

    if device == "auto":
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise XadError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise XadError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise XadError(f"--device {device}: only {count} CUDA device(s) here (cuda:0 ... cuda:{count - 1})")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise XadError(f"--device {device}: MPS is not available here; use --device cpu or auto")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise XadError(f"--device {device}: unsupported device type; use auto, cpu, cuda or cuda:N")
    return device


def check_weights_file(weights: str | None) -> None:
    """--weights must name an existing file (None: torchvision's weights or --no-pretrained)."""
    if weights is not None and not Path(weights).is_file():
        raise XadError(f"--weights {weights}: no such file; pass a VGG11-BN features state dict or --no-pretrained")
