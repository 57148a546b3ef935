"""Grid scaling: one grid run in this process with the local executor (one job at a time, torch
with --workers threads) and with the Ray executor (--workers Ray workers of one thread each, a Ray
instance started here), each into its own run folder. Prints both wall times, Ray's start-up time
and the ratios. Then the grid runs locally once more with one thread, the Ray tasks' own thread
count, and the script prints whether the run folders hold the same rows and predictions (compared
bit for bit; where they differ, the largest difference): torch's CPU kernels may sum in another
order with another thread count, so only the same thread count can promise the same bits.

Default grid: FCDD and the AE on the four classes of the built-in synthetic set (8 jobs), two
epochs each from random initialisation (--no-pretrained), so it runs offline in minutes on 2 cores.

    python bench/grid_scaling.py [--methods fcdd,ae] [--classes all] [--seeds 0] [--epochs 2] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from xadbench import grid, run_folder, runner
from xadbench.executors import LocalExecutor, RayExecutor
from xadbench.options import parse_seeds, split_list

#: Columns that record how a job ran (its timings, its thread count), not what it computed.
HOW_IT_RAN = ["fit_s", "predict_s", "sanity_s", "threads"]


def stored(out: Path) -> pd.DataFrame:
    rows = run_folder.read_results(out).drop(columns=HOW_IT_RAN)
    return rows.sort_values(["job_id", "blur", "metric"]).reset_index(drop=True)


def compare(local: Path, ray: Path) -> tuple[bool, float, float]:
    """(identical, largest |difference| of a result value, largest |difference| of a prediction array)."""
    a, b = stored(local), stored(ray)
    same_keys = a.drop(columns="value").equals(b.drop(columns="value"))
    values = np.abs(a["value"].to_numpy(float) - b["value"].to_numpy(float)) if same_keys else np.array([np.inf])
    value_diff = float(np.nanmax(values)) if values.size else 0.0
    identical = same_keys and a["value"].equals(b["value"])
    array_diff = 0.0
    for path in sorted((local / "predictions").glob("*.npz")):
        with np.load(path) as x, np.load(ray / "predictions" / path.name) as y:
            for key in x.files:
                identical = identical and x[key].dtype == y[key].dtype and x[key].tobytes() == y[key].tobytes()
                if np.issubdtype(x[key].dtype, np.number):
                    array_diff = max(array_diff, float(np.abs(x[key].astype(float) - y[key].astype(float)).max(initial=0)))
    return identical, value_diff, array_diff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="fcdd,ae")
    parser.add_argument("--classes", default="all")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="local: torch threads; ray: workers of 1 thread")
    args = parser.parse_args()
    import ray

    data = runner.open_dataset("synthetic", None)
    classes = data.classes() if args.classes == "all" else split_list(args.classes)
    specs = [runner.JobSpec("synthetic", c, m, seed=s, pretrained=False, params=(("epochs", args.epochs),))
             for c in classes for m in split_list(args.methods) for s in parse_seeds(args.seeds)]
    print(f"grid: {len(specs)} jobs ({args.methods} × {len(classes)} classes × seeds {args.seeds}, "
          f"{args.epochs} epochs); cores {os.cpu_count()}, load average before {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="grid-scaling-") as tmp:
        local_out, ray_out = Path(tmp) / "local", Path(tmp) / "ray"
        start = time.perf_counter()
        grid.run_grid(specs, local_out, executor=LocalExecutor(threads=args.workers))
        local_s = time.perf_counter() - start
        print(f"local: {len(specs)} jobs one after another, torch {args.workers} threads: {local_s:.1f} s")

        start = time.perf_counter()
        ray.init(num_cpus=args.workers, object_store_memory=200 * 1024**2, include_dashboard=False,
                 log_to_driver=False)
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        grid.run_grid(specs, ray_out, executor=RayExecutor(cpus_per_job=1))
        ray_s = time.perf_counter() - start
        ray.shutdown()
        print(f"ray:   {args.workers} workers × 1 thread: {ray_s:.1f} s for the grid + {startup_s:.1f} s to start Ray")
        print(f"ratio local / ray: {local_s / ray_s:.2f} (grid only), {local_s / (ray_s + startup_s):.2f} (with Ray's start)")
        print(f"RATIO grid_ray_vs_local {ray_s:.3f} s {local_s:.3f} s {local_s / ray_s:.2f}")
        one_thread_out = Path(tmp) / "local-1-thread"
        start = time.perf_counter()
        grid.run_grid(specs, one_thread_out, executor=LocalExecutor(threads=1))
        print(f"local: {len(specs)} jobs one after another, torch 1 thread: {time.perf_counter() - start:.1f} s")
        for name, reference in ((f"local {args.workers} threads", local_out), ("local 1 thread", one_thread_out)):
            identical, value_diff, array_diff = compare(reference, ray_out)
            print(f"ray vs {name}: identical bit for bit (rows and predictions): {identical}; largest "
                  f"difference: result value {value_diff:.3g}, prediction array {array_diff:.3g}")
    print(f"load average after {os.getloadavg()}")


if __name__ == "__main__":
    main()
