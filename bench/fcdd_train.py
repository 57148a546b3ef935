"""FCDD training throughput of the VGG net at 224 px against this machine's matmul peak.

Prints training images/s (batch 16, random init, one optimiser step per batch, as `FCDD.fit`
runs it: channels-last, frozen layers without autograd, eq. 2 loss) next to the float32
matmul GFLOP/s measured in the same process, and the network's FLOPs per training image,
counted analytically from the layer sizes (`xadbench.receptive_field.conv_macs`): forward of
the frozen part + 3 × forward of the trained part (forward, input gradient, weight gradient),
2 FLOPs per multiply-accumulate. The fraction of peak reached is their ratio.

    .venv/bin/python bench/fcdd_train.py [--batch 16] [--size 224] [--iters 5] [--threads N]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from xadbench.methods.fcdd import build_net, fcdd_loss
from xadbench.receptive_field import conv_macs


def matmul_gflops(n: int = 4096, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net, _ = build_net("mvtec", 3, pretrained=False)
    net = net.to(memory_format=torch.channels_last).train()
    frozen = [m for m in net.body.frozen.modules() if isinstance(m, torch.nn.Conv2d)]
    trained = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and not any(m is f for f in frozen)]
    macs_frozen = conv_macs(net, args.size, frozen)
    macs_trained = conv_macs(net, args.size, trained)
    flops_per_image = 2 * (macs_frozen + 3 * macs_trained)

    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1e-4, momentum=0.9, nesterov=True)
    images = torch.rand(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    labels = (torch.arange(args.batch) % 2).float()

    def step() -> None:
        loss = fcdd_loss(net.heatmap(images), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(args.warmup):
        step()
    peak = matmul_gflops()
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    seconds = time.perf_counter() - start
    peak = max(peak, matmul_gflops())  # measured before and after; the better one counts
    images_per_s = args.iters * args.batch / seconds
    achieved = images_per_s * flops_per_image / 1e9
    print(f"FCDD VGG net, {args.size} px, batch {args.batch}, {torch.get_num_threads()} threads, {args.iters} iterations")
    print(f"  GFLOP per training image: {flops_per_image / 1e9:.2f} "
          f"(frozen fwd {2 * macs_frozen / 1e9:.2f} + 3 x trained fwd {2 * macs_trained / 1e9:.2f})")
    print(f"  training:  {images_per_s:.2f} images/s = {achieved:.1f} GFLOP/s")
    print(f"  matmul:    {peak:.1f} GFLOP/s (float32, 4096x4096)")
    print(f"  fraction of matmul peak: {achieved / peak:.0%}")


if __name__ == "__main__":
    main()
