"""Options several commands share: the Typer declarations of --preset, --protocol, --blur,
--device, --weights and --pretrained, the parsing and checks of comma lists, --seeds, --k,
--oe-limit, --device and --weights, and the "did you mean" hint for a mistyped choice.

Enumerated options are `Literal` types: Typer shows their choices in `--help` and rejects other
values before the command runs; `choice_hint` adds the closest choice to that one-line error."""
from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Literal

import typer

from xadbench.errors import XadError

Preset = Literal["cpu", "paper"]
Protocol = Literal["unsupervised", "semi-supervised", "synthetic-gt"]
BlurChoice = Literal["gaussian", "none", "both"]
PresetOption = Annotated[Preset, typer.Option(help="cpu (small, minutes on a laptop) or paper (the paper's setup).")]
ProtocolOption = Annotated[Protocol, typer.Option(
    help="unsupervised (synthetic anomalies or Outlier Exposure), semi-supervised (k real defects per type) "
         "or synthetic-gt (confetti with its own masks).")]
BlurOption = Annotated[BlurChoice, typer.Option(
    help="Baselines' maps: gaussian (blurred with FCDD's kernel, as the paper), none, or both.")]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N.")]
WeightsOption = Annotated[str | None, typer.Option(help="Pretrained VGG11-BN features state dict, for every method with a VGG backbone.")]
PretrainedOption = Annotated[bool, typer.Option("--pretrained/--no-pretrained", help="Start VGG backbones from ImageNet weights.")]


def split_list(value: str | None) -> list[str]:
    """"a, b,,c" → ["a", "b", "c"]; None or "" → []."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


#: numpy's legacy seeding (np.random.seed, which the runner calls) takes 0 ... 2**32 - 1.
MAX_SEED = 2**32 - 1


#: Seeds of a seed-sensitive method (`Method.seed_sensitive`) under the cpu preset without --seeds.
SENSITIVE_SEEDS = (0, 1, 2)


def default_seeds(method_names: list[str], preset: str) -> dict[str, tuple[int, ...]]:
    """Each method's seeds when --seeds is not given: (0,), and SENSITIVE_SEEDS for a method that
    declares `seed_sensitive` under the cpu preset (its spread over seeds is then in every table)."""
    from xadbench.registry import methods

    return {name: SENSITIVE_SEEDS if preset == "cpu" and getattr(methods.get(name), "seed_sensitive", False) else (0,)
            for name in method_names}


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


_NOT_ONE_OF = re.compile(r"'(?P<value>[^']*)' is not one of (?P<choices>'[^.]*')\.")


def choice_hint(message: str) -> str:
    """A usage error about a value that is not one of an option's choices, with the closest
    choice appended ("... did you mean 'paper'?"); other messages unchanged."""
    message = message.replace("Value error, ", "")
    found = _NOT_ONE_OF.search(message)
    if not found:
        return message
    choices = re.findall(r"'([^']*)'", found["choices"])
    close = [c for c in choices if c.startswith(found["value"])] if found["value"] else []
    close = close if len(close) == 1 else difflib.get_close_matches(found["value"], choices, n=1, cutoff=0.5)
    return f"{message.rstrip('.')}; did you mean {close[0]!r}?" if close else message
