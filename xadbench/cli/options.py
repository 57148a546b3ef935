"""Options several commands share, as Typer declarations: --preset, --protocol, --blur, --device,
--weights and --pretrained; and the "did you mean" hint for a mistyped choice.

Enumerated options are `Literal` types: Typer shows their choices in `--help` and rejects other
values before the command runs; `choice_hint` adds the closest choice to that one-line error.
The checks of option values the library makes too live in `xadbench.options`."""
from __future__ import annotations

import difflib
import re
from typing import Annotated, Literal

import typer

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
