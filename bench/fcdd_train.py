"""FCDD's training step (the VGG net, eq. 2) against two references measured in the same run.

1. An achievable peak: one 3×3 convolution at the widths and map size of the net's widest trained
   layer, forward and backward (input and weight gradients), channels-last like the step: what
   oneDNN reaches on this CPU for the work the step mostly does.
2. A plain eager re-statement of the paper's step: the same net and weights, default (NCHW) memory
   format, the whole net in train mode (the frozen layers' batch norms use batch statistics, as in
   the reference code), autograd left to decide what to record.

FLOPs per training image count exactly what the step computes, from the layer sizes
(`xadbench.receptive_field.conv_macs`), 2 per multiply-accumulate: the frozen layers' forward;
the trained convs' forward and weight gradients; their input gradients except for the first
trained conv, whose input (the frozen layers' output) needs none. Norms, activations, pooling and
the optimiser are not counted, so the fraction of the conv peak is a lower bound of the convs'
own efficiency.

    .venv/bin/python bench/fcdd_train.py [--batch 16] [--size 224] [--iters 3] [--threads N]
"""
from __future__ import annotations

import argparse
import copy
import time
import warnings

import torch
import torch.nn as nn

from xadbench.methods.fcdd import fcdd_loss
from xadbench.methods.fcdd_net import build_net
from xadbench.provenance import cpu_model
from xadbench.receptive_field import conv_macs, walk


def best_seconds(step, iters: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        step()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    return best


def widest_trained_conv(net: nn.Module, size: int, trained: list[nn.Conv2d]) -> tuple[nn.Conv2d, tuple[int, int]]:
    """The trained 3×3 conv with the most multiply-accumulates, and its output size."""
    found = [(step.module, step.out_size) for step in walk(net, size)
             if any(step.module is m for m in trained) and step.module.kernel_size == (3, 3)]
    return max(found, key=lambda f: f[0].in_channels * f[0].out_channels * f[1][0] * f[1][1])


def conv_peak(batch: int, channels_in: int, channels_out: int, side: tuple[int, int], iters: int) -> float:
    """GFLOP/s of one 3×3 conv's forward, input gradient and weight gradient, channels-last."""
    conv = nn.Conv2d(channels_in, channels_out, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(batch, channels_in, *side).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn(batch, channels_out, *side).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        conv.zero_grad(set_to_none=True)
        x.grad = None
        conv(x).backward(grad)

    seconds = best_seconds(step, iters)
    macs = batch * side[0] * side[1] * channels_in * channels_out * 9
    return 3 * 2 * macs / seconds / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net, _ = build_net("mvtec", 3, pretrained=False)
    plain = copy.deepcopy(net)  # same weights, before any step

    # xadbench's step, as FCDD.fit runs it: channels-last, frozen layers in eval mode, no graph there.
    net = net.to(memory_format=torch.channels_last).train()
    frozen = [m for m in net.body.frozen.modules() if isinstance(m, nn.Conv2d)]
    trained = [m for m in net.modules() if isinstance(m, nn.Conv2d) and not any(m is f for f in frozen)]
    first_trained = next(m for m in net.body.trained.modules() if isinstance(m, nn.Conv2d))
    macs_frozen = conv_macs(net, args.size, frozen)
    macs_trained = conv_macs(net, args.size, trained)
    macs_first = conv_macs(net, args.size, [first_trained])
    flops_per_image = 2 * (macs_frozen + 3 * macs_trained - macs_first)

    images = torch.rand(args.batch, 3, args.size, args.size)
    labels = (torch.arange(args.batch) % 2).float()

    def make_step(model: nn.Module, batch: torch.Tensor):
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9,
                              nesterov=True)

        def step() -> None:
            loss = fcdd_loss(model.heatmap(batch), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    # The plain re-statement: NCHW, the frozen layers as a plain Sequential (requires_grad False,
    # train mode: their batch norms use batch statistics, as the reference code's do).
    plain.body.frozen = plain.body.frozen.module
    plain.train()

    xad_step = make_step(net, images.contiguous(memory_format=torch.channels_last))
    plain_step = make_step(plain, images)
    widest, out_size = widest_trained_conv(net, args.size, trained)
    peak = conv_peak(args.batch, widest.in_channels, widest.out_channels, out_size, args.iters)
    xad_s = best_seconds(xad_step, args.iters)
    plain_s = best_seconds(plain_step, args.iters)
    peak = max(peak, conv_peak(args.batch, widest.in_channels, widest.out_channels, out_size, args.iters))

    xad_ips, plain_ips = args.batch / xad_s, args.batch / plain_s
    achieved = xad_ips * flops_per_image / 1e9
    print(f"CPU: {cpu_model()}")
    print(f"FCDD VGG net, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, "
          f"best of {args.iters} steps")
    print(f"  GFLOP per training image: {flops_per_image / 1e9:.2f} (frozen fwd {2 * macs_frozen / 1e9:.2f} "
          f"+ trained fwd and weight grad 2 x {2 * macs_trained / 1e9:.2f} + input grad "
          f"{2 * (macs_trained - macs_first) / 1e9:.2f}, none for the first trained conv)")
    print(f"  conv peak:           {peak:7.1f} GFLOP/s (3x3 conv {widest.in_channels}->{widest.out_channels} at "
          f"{out_size[0]}x{out_size[1]}, batch {args.batch}, forward + both gradients, channels-last)")
    print(f"  xadbench step:       {xad_ips:7.2f} img/s = {achieved:.1f} GFLOP/s")
    print(f"  plain eager step:    {plain_ips:7.2f} img/s (NCHW, frozen batch norms in train mode)")
    print(f"xadbench fit step: {xad_ips:.2f} img/s = {achieved / peak:.0%} of conv peak, "
          f"{xad_ips / plain_ips:.2f}x the plain reference")
    print(f"RATIO fcdd_step_vs_plain {xad_ips:.3f} img/s {plain_ips:.3f} img/s {xad_ips / plain_ips:.2f}")
    print(f"RATIO fcdd_step_vs_conv_peak {achieved:.3f} GFLOP/s {peak:.3f} GFLOP/s {achieved / peak:.2f}")


if __name__ == "__main__":
    main()
