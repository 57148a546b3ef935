"""Options several commands share: the Typer declarations of --preset, --device, --weights and
--pretrained, and the parsing and checks of comma lists, --seeds and --weights."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xadbench.errors import XadError

PresetOption = Annotated[str, typer.Option(help="cpu (small, minutes on a laptop) or paper (the paper's setup).")]
DeviceOption = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N.")]
WeightsOption = Annotated[str | None, typer.Option(help="Pretrained VGG11-BN features state dict, for every method with a VGG backbone.")]
PretrainedOption = Annotated[bool, typer.Option("--pretrained/--no-pretrained", help="Start VGG backbones from ImageNet weights.")]


def split_list(value: str | None) -> list[str]:
    """"a, b,,c" → ["a", "b", "c"]; None or "" → []."""
    return [part.strip() for part in value.split(",") if part.strip()] if value else []


def parse_seeds(value: str) -> tuple[int, ...]:
    """--seeds "0,1,2" → (0, 1, 2), duplicates dropped in order; a one-line error otherwise."""
    try:
        seeds = tuple(int(s) for s in split_list(value))
    except ValueError:
        raise XadError(f"--seeds {value!r}: use comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds:
        raise XadError("--seeds is empty; use e.g. --seeds 0,1,2")
    return tuple(dict.fromkeys(seeds))


def check_weights_file(weights: str | None) -> None:
    """--weights must name an existing file (None: torchvision's weights or --no-pretrained)."""
    if weights is not None and not Path(weights).is_file():
        raise XadError(f"--weights {weights}: no such file; pass a VGG11-BN features state dict or --no-pretrained")
