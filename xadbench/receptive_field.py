"""Receptive-field bookkeeping for fully convolutional stacks (FCDD paper, section 3).

Every output pixel of a stack of convolutions and poolings depends on a square window of the
input, its receptive field. Walking the layers in order and starting from the input itself
(size n = H, jump j = 1, extent r = 1, centre s = 0), each layer with kernel k, stride t,
padding p and dilation d (effective kernel k_e = d·(k − 1) + 1) updates

    n' = (n + 2p − k_e) // t + 1        (ceil instead of floor for ceil-mode pooling)
    j' = j · t                          (the jump: input pixels between neighbouring outputs)
    r' = r + (k_e − 1) · j              (the extent of the field, in input pixels)
    s' = s + ((k_e − 1)/2 − p) · j      (the centre of output pixel 0's field)

so output pixel (u, v) sees the input window centred on (s + u·j, s + v·j), r pixels wide (it
may reach beyond the image into the padding). Pooling counts as a layer; batch norm (in eval
mode), activations and dropout act per pixel and pass through.

`receptive_field(net, input_size)` walks any module made of such layers, recursing into
containers (nn.Sequential, wrappers) in the order their children were registered, which is the
order they run in for every network of this project. An unknown leaf layer raises TypeError
rather than guess; a custom per-pixel module can declare `receptive_field_passthrough = True`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn

#: Layers that act on each pixel on its own (in eval mode for batch norm).
POINTWISE = (
    nn.modules.batchnorm._BatchNorm,
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.Softplus,
    nn.Identity, nn.Dropout, nn.Dropout2d,
)
SPATIAL = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)


@dataclass(frozen=True)
class ReceptiveField:
    """Where the output pixels of a fully convolutional stack look in its input.

    size: the output map's (height, width) for the input size it was computed for.
    jump: input pixels between the field centres of neighbouring output pixels (the cumulative
        stride).
    extent: the field's side in input pixels (r).
    centre: the input coordinate of output pixel 0's field centre (s); pixel (u, v) has its
        field centred on (centre + u·jump, centre + v·jump). Coordinates count pixel centres
        from 0, so a half-integer lies between two pixels.
    """

    size: tuple[int, int]
    jump: int
    extent: int
    centre: float

    @property
    def start(self) -> int:
        """The input coordinate of the first pixel of output pixel 0's field (negative when the
        field reaches into the padding); always an integer, as the field is r whole pixels."""
        return round(self.centre - (self.extent - 1) / 2)


@dataclass(frozen=True)
class LayerStep:
    """One spatial layer in a walk: the module, its input and output (H, W), and the field after it."""

    module: nn.Module
    in_size: tuple[int, int]
    out_size: tuple[int, int]
    field: ReceptiveField


def _square(value, name: str, module: nn.Module) -> int:
    if isinstance(value, tuple):
        if len(set(value)) != 1:
            raise ValueError(f"{type(module).__name__} has {name} {value}; only square ones are supported")
        value = value[0]
    return int(value)


def _geometry(module: nn.Module) -> tuple[int, int, int, int, bool]:
    """(kernel, stride, padding, dilation, ceil_mode) of a conv or pooling layer."""
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str):
            raise ValueError(f"{module}: string padding {module.padding!r} is not supported; use numbers")
        ceil = False
    else:
        ceil = bool(module.ceil_mode)
    kernel = _square(module.kernel_size, "kernel_size", module)
    stride = _square(module.stride if module.stride is not None else module.kernel_size, "stride", module)
    padding = _square(module.padding, "padding", module)
    dilation = _square(getattr(module, "dilation", 1), "dilation", module)
    return kernel, stride, padding, dilation, ceil


def _out_length(n: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    if ceil:
        out = math.ceil((n + 2 * padding - kernel) / stride) + 1
        # PyTorch drops a last window that would start inside the right padding.
        if (out - 1) * stride >= n + padding:
            out -= 1
        return out
    return (n + 2 * padding - kernel) // stride + 1


def spatial_layers(net: nn.Module) -> list[nn.Module]:
    """The conv and pooling layers of `net` in order, pass-through layers skipped."""
    found: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if isinstance(module, SPATIAL):
            found.append(module)
        elif isinstance(module, POINTWISE) or getattr(module, "receptive_field_passthrough", False):
            return
        elif len(list(module.children())) > 0:
            for child in module.children():
                visit(child)
        else:
            raise TypeError(
                f"receptive_field does not know the layer {type(module).__name__}; only Conv2d, "
                "MaxPool2d, AvgPool2d and per-pixel layers (norms in eval mode, activations, dropout) "
                "are supported; a custom per-pixel module may set receptive_field_passthrough = True"
            )

    visit(net)
    return found


def walk(net: nn.Module, input_size: int | tuple[int, int]) -> list[LayerStep]:
    """The field after every spatial layer of `net` for an input of `input_size` (H or (H, W))."""
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    size, jump, extent, centre = (int(height), int(width)), 1, 1, 0.0
    steps = []
    for module in spatial_layers(net):
        kernel, stride, padding, dilation, ceil = _geometry(module)
        k = dilation * (kernel - 1) + 1
        new_size = tuple(_out_length(n, k, stride, padding, ceil) for n in size)
        if min(new_size) < 1:
            raise ValueError(f"input {height}x{width} is too small for {net.__class__.__name__}: "
                             f"{type(module).__name__} would output {new_size[0]}x{new_size[1]}")
        extent = extent + (k - 1) * jump
        centre = centre + ((k - 1) / 2 - padding) * jump
        jump = jump * stride
        field = ReceptiveField(size=new_size, jump=jump, extent=extent, centre=centre)
        steps.append(LayerStep(module, size, new_size, field))
        size = new_size
    return steps


def receptive_field(net: nn.Module, input_size: int | tuple[int, int]) -> ReceptiveField:
    """The receptive field of `net`'s output pixels for an input of `input_size` (H or (H, W))."""
    steps = walk(net, input_size)
    if not steps:
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        return ReceptiveField(size=size, jump=1, extent=1, centre=0.0)
    return steps[-1].field


def conv_macs(net: nn.Module, input_size: int | tuple[int, int], layers: list[nn.Module] | None = None) -> int:
    """Multiply-accumulates of the forward pass of `net`'s convolutions for one image, counted
    from the layer sizes: out_h · out_w · C_out · (C_in / groups) · k² per conv (bias, norms and
    pooling ignored). `layers` restricts the count to those modules."""
    total = 0
    for step in walk(net, input_size):
        module = step.module
        if not isinstance(module, nn.Conv2d) or (layers is not None and not any(module is m for m in layers)):
            continue
        kernel = _square(module.kernel_size, "kernel_size", module)
        per_pixel = module.out_channels * (module.in_channels // module.groups) * kernel * kernel
        total += step.out_size[0] * step.out_size[1] * per_pixel
    return total
