"""Seconds from the start of a job (`xadbench.runner.run_job`) to the start of its method's `fit`,
without the decode cache and with it (the first job of a class builds the entry, the second
reads it), after one warm-up job that takes the process's one-time costs.

    python bench/decode_cache.py [--root FOLDER --class NAME] [--method fcdd] [--preset cpu]

Without --root, a class shaped like MVTec-AD bottle (209 training and 83 test images of 900x900
PNG, 63 of them defective with masks) is generated into a temporary folder. The cache lives in
a fresh temporary XADBENCH_CACHE, so the first cached job really builds it. Target: the second
job of a class starts its fit within a second.
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from xadbench import decode_cache, runner
from xadbench.provenance import cpu_model

DEFECTS = ("broken_large", "broken_small", "contamination")


class FitStarted(BaseException):
    """Raised in place of `fit`: carries the time it was called (passes plugin_call unchanged)."""


def make_bottle_like(root: Path, side: int, seed: int = 0) -> str:
    """Eight distinct smooth PNGs written round-robin (encoding each anew would take minutes;
    every file is still decoded on its own)."""
    rng = np.random.default_rng(seed)
    folder = root / "bottle"
    blobs = []
    for _ in range(8):
        coarse = rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(coarse).resize((side, side), Image.Resampling.BICUBIC).save(buffer, "PNG")
        blobs.append(buffer.getvalue())

    def write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    names = [("train/good", i) for i in range(209)] + [("test/good", i) for i in range(20)]
    names += [(f"test/{defect}", i) for defect in DEFECTS for i in range(21)]
    for n, (sub, i) in enumerate(names):
        write(folder / sub / f"{i:03d}.png", blobs[n % len(blobs)])
    for defect in DEFECTS:
        for i in range(21):
            mask = np.zeros((side, side), dtype=np.uint8)
            y, x = rng.integers(0, side - side // 8, 2)
            mask[y:y + side // 8, x:x + side // 8] = 255
            buffer = io.BytesIO()
            Image.fromarray(mask).save(buffer, "PNG")
            write(folder / "ground_truth" / defect / f"{i:03d}_mask.png", buffer.getvalue())
    return "bottle"


def seconds_to_fit(spec: runner.JobSpec) -> float:
    original = runner.build_method

    def build(spec_, profile):
        method = original(spec_, profile)

        def fit(*args, **kwargs):
            raise FitStarted(time.perf_counter())

        method.fit = fit
        return method

    runner.build_method = build
    start = time.perf_counter()
    try:
        runner.run_job(spec)
    except FitStarted as started:
        return started.args[0] - start
    finally:
        runner.build_method = original
    raise RuntimeError("the job finished without calling fit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None)
    parser.add_argument("--class", dest="class_name", default="bottle")
    parser.add_argument("--method", default="fcdd")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--side", type=int, default=900, help="generated images' side")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = args.root
        if root is None:
            start = time.perf_counter()
            root = scratch / "data"
            make_bottle_like(root, args.side)
            print(f"generated a bottle-shaped class ({args.side}x{args.side}) in {time.perf_counter() - start:.1f} s")
        os.environ["XADBENCH_CACHE"] = str(scratch / "cache")

        def spec(seed: int) -> runner.JobSpec:
            return runner.JobSpec(dataset="mvtec", class_name=args.class_name, method=args.method, seed=seed,
                                  preset=args.preset, root=str(root))

        # A first job pays the process's one-time costs (imports, first allocations, the page
        # cache); a job of another seed takes them first, so no measured job carries them.
        os.environ[decode_cache.SWITCH] = "0"
        warm_up = seconds_to_fit(spec(2))
        uncached = seconds_to_fit(spec(0))
        os.environ[decode_cache.SWITCH] = "1"
        first = seconds_to_fit(spec(0))
        second = seconds_to_fit(spec(1))
    print(f"{args.method} on {args.class_name}, preset {args.preset}: seconds from job start to fit start")
    print(f"  warm-up job (not counted): {warm_up:6.2f} s")
    print(f"  cache off:                 {uncached:6.2f} s")
    print(f"  cache on, first job:       {first:6.2f} s (decodes and writes the entry)")
    print(f"  cache on, second job:      {second:6.2f} s")
    print(f"second job starts its fit in {second:.2f} s (target <= 1 s): {'MET' if second <= 1 else 'MISSED'}")
    print(f"RATIO decode_cache_second_job {second:.3f} s {uncached:.3f} s {uncached / second:.1f}")


if __name__ == "__main__":
    main()
