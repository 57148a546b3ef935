"""End-to-end training throughput of a real `FCDD.fit` against the model-only step, same process.

`FCDD.fit` at the cpu preset for MVTec-AD (the VGG net at its full widths, 128 px, batch 16,
randomly initialised so that nothing is downloaded; compute is that of the pretrained net), on
generated smooth images, with everything the unsupervised protocol runs in its loop: online
replacement by confetti noise and by Outlier Exposure images, the mvtec augmentation, the eq. 3
loss on the upsampled heatmap where pixel ground truth exists. Throughput counts the epochs after
the first (the first includes building the net). The model-only step is the same net, loss and
optimiser on one fixed batch: forward, backward, step. Target: fit >= 80 % of the model-only
step. With --profile, the fit's time per xadbench function (cProfile, cumulative) is printed too.

    .venv/bin/python bench/fcdd_fit.py [--images 64] [--epochs 3] [--size 128] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import time
import warnings

import torch
import torch.nn.functional as F

from xadbench.methods.fcdd import FCDD, fcdd_pixel_loss
from xadbench.methods.fcdd_net import build_net, receptive_upsample
from xadbench.provenance import cpu_model
from xadbench.receptive_field import receptive_field
from xadbench.training import make_optimizer
from xadbench.types import Sample, TrainData


def smooth_images(n: int, size: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def model_only_images_per_s(params: dict, size: int, batch: int, iters: int) -> float:
    """The fit's model work alone: the same net, eq. 3 loss and optimiser on one fixed batch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        net, _ = build_net("mvtec", 3, small=False, pretrained=False)
    net = net.to(memory_format=torch.channels_last).train()
    field = receptive_field(net, (size, size))
    opt = make_optimizer(net.parameters(), params["optimizer"], params["lr"], params["weight_decay"])
    images = smooth_images(batch, size, 1).contiguous(memory_format=torch.channels_last)
    masks = torch.zeros(batch, size, size)
    masks[: batch // 2, size // 4: size // 2, size // 4: size // 2] = 1

    def step() -> None:
        loss = fcdd_pixel_loss(receptive_upsample(net.heatmap(images), field, params["sigma"], (size, size)), masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    return iters * batch / (time.perf_counter() - start)


def fit_images_per_s(params: dict, train: TrainData, epochs: int, profile: bool) -> float:
    stamps = []
    model = FCDD(**{**params, "epochs": epochs, "pretrained": False, "small": False, "device": "cpu"})
    profiler = cProfile.Profile() if profile else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if profiler:
            profiler.enable()
        model.fit(train, on_epoch=lambda epoch, total, loss: stamps.append(time.perf_counter()))
        if profiler:
            profiler.disable()
    if profiler:
        print("fit profile (cumulative seconds per function, top 25):")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    return (epochs - 1) * len(train.nominal) / (stamps[-1] - stamps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="nominal training images")
    parser.add_argument("--oe", type=int, default=32, help="Outlier Exposure images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    params = FCDD.preset("cpu", "mvtec")
    nominal = [Sample(image, 0) for image in smooth_images(args.images, args.size, 2)]
    outliers = [Sample(image, 1) for image in smooth_images(args.oe, args.size, 3)]
    train = TrainData(nominal, anomalies=outliers, confetti=True, confetti_masks=True)

    model_ips = model_only_images_per_s(params, args.size, params["batch_size"], iters=max(2, args.images // 16))
    fit_ips = fit_images_per_s(params, train, args.epochs, args.profile)
    model_ips = max(model_ips, model_only_images_per_s(params, args.size, params["batch_size"],
                                                       iters=max(2, args.images // 16)))
    print(f"CPU: {cpu_model()}")
    print(f"FCDD.fit, cpu preset (mvtec, {args.size} px, batch {params['batch_size']}), {args.images} nominal + "
          f"{args.oe} OE images, confetti with masks, augmentation, {torch.get_num_threads()} threads")
    print(f"  model-only step: {model_ips:7.2f} img/s")
    print(f"  FCDD.fit:        {fit_ips:7.2f} img/s (epochs 2..{args.epochs})")
    share = fit_ips / model_ips
    print(f"fit throughput = {share:.0%} of the model-only step (target >= 80 %): {'MET' if share >= 0.8 else 'MISSED'}")
    print(f"RATIO fcdd_fit_vs_model_step {fit_ips:.3f} img/s {model_ips:.3f} img/s {share:.2f}")


if __name__ == "__main__":
    main()
