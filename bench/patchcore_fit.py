"""PatchCore's fit and predict at the size of a MVTec-AD class, and its greedy coreset step
against anomalib's `KCenterGreedy` step on the same features.

Random images stand in for a class (timings do not depend on the pixels): 209 training and 83
test images at the cpu preset's 128 px, bottle's counts. Prints the seconds of `PatchCore.fit`
(features, anomalib's sparse random projection, greedy k-center selection of the coreset) and
of `predict` (nearest-neighbour search of every test patch over the memory bank), then the
seconds per greedy step of xadbench's `k_center_greedy` (one matrix-vector product) and of
anomalib's `KCenterGreedy.update_distances` (x − c for every row), both on the fit's projected
features in this process, and their ratio.

    .venv/bin/python bench/patchcore_fit.py [--train 209] [--test 83] [--size 128]
        [--coreset-ratio 0.01] [--steps 20] [--threads N]
"""
from __future__ import annotations

import argparse
import time
import warnings

import torch

from xadbench.methods.anomalib_models import PatchCore, k_center_greedy
from xadbench.provenance import cpu_model
from xadbench.types import Sample, TrainData


def greedy_step_seconds(features: torch.Tensor, steps: int) -> tuple[float, float]:
    """Seconds per step of xadbench's greedy and of anomalib's, each run for `steps` steps."""
    from anomalib.models.components import KCenterGreedy

    start = time.perf_counter()
    k_center_greedy(features, steps + 1)
    ours = (time.perf_counter() - start) / steps
    sampler = KCenterGreedy(embedding=features, sampling_ratio=1.0)
    sampler.features, index = features, torch.tensor(0)
    start = time.perf_counter()
    for _ in range(steps):  # the body of anomalib's select_coreset_idxs loop
        sampler.update_distances(index)
        index = sampler.get_new_idx()
        sampler.min_distances.scatter_(0, index.view(1, 1), 0.0)
    return ours, (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=209)
    parser.add_argument("--test", type=int, default=83)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--coreset-ratio", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=20, help="greedy steps timed per implementation")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # timm's and anomalib's import-time notices
        from anomalib.models.components import SparseRandomProjection

    torch.manual_seed(0)
    train = TrainData([Sample(torch.rand(3, args.size, args.size), 0) for _ in range(args.train)])
    test = torch.rand(args.test, 3, args.size, args.size)
    print(f"PatchCore, vgg11_bn (random init), {args.train} training / {args.test} test images at {args.size} px, "
          f"coreset ratio {args.coreset_ratio}, {torch.get_num_threads()} threads, {cpu_model()}")
    method = PatchCore(coreset_ratio=args.coreset_ratio, pretrained=False, device="cpu")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random initialisation
        method.fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    method.predict(test)
    predict_s = time.perf_counter() - start
    bank, channels = method.model_.memory_bank.shape
    patches = round(bank / args.coreset_ratio)
    print(f"  fit:     {fit_s:7.1f} s  (~{patches} patches of {channels} channels, {bank} greedy steps)")
    print(f"  predict: {predict_s:7.1f} s  ({args.test * patches // args.train} test patches against {bank} "
          f"memory-bank features)")

    embedding = torch.randn(patches, channels)
    features = SparseRandomProjection(eps=0.9).fit(embedding).transform(embedding)  # anomalib's coreset setting
    ours, theirs = greedy_step_seconds(features, args.steps)
    print(f"  greedy step on {tuple(features.shape)} projected features: xadbench {ours * 1e3:.1f} ms, "
          f"anomalib {theirs * 1e3:.1f} ms, ratio {theirs / ours:.1f}x; "
          f"{bank} steps: {bank * ours:.0f} s against {bank * theirs:.0f} s")


if __name__ == "__main__":
    main()
