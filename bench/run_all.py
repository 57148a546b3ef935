"""Run every bench and print one table of their ratios (what `make bench` runs).

Each bench runs as its own process, its output shown as it comes; a bench reports its headline
as a line `RATIO <name> <measured> <unit> <reference> <unit> <ratio>`, the reference measured
in the same process. Sizes are chosen so that the whole run takes minutes on 2 cores; each
bench's own defaults (e.g. 67 M pixels for the pixel AUC) are the issue-sized runs.

    python bench/run_all.py [--only pixel_auc,fcdd_fit]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from xadbench.provenance import cpu_model

HERE = Path(__file__).resolve().parent
BENCHES = {
    "pixel_auc": ["--pixels", "16000000"],
    "bootstrap": [],
    "fcdd_train": ["--size", "128", "--iters", "2"],
    "fcdd_fit": ["--images", "32", "--epochs", "3"],
    "decode_cache": ["--side", "450"],
    "cli_startup": [],
    "grid_scaling": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=None, help="comma-separated bench names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHES)
    if unknown := [n for n in names if n not in BENCHES]:
        parser.error(f"--only: unknown bench {', '.join(unknown)}; known: {', '.join(BENCHES)}")
    rows, failed = [], []
    for name in names:
        command = [sys.executable, str(HERE / f"{name}.py"), *BENCHES[name]]
        print(f"\n=== {' '.join(command[1:])}", flush=True)
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith("RATIO "):
                rows.append(line.split()[1:])
        if process.wait() != 0:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nCPU: {cpu_model()}")
    header = f"{'bench':<34}{'measured':>20}{'reference':>20}{'ratio':>9}"
    print(header)
    print("-" * len(header))
    for name, measured, unit, reference, ref_unit, ratio in rows:
        print(f"{name:<34}{measured + ' ' + unit:>20}{reference + ' ' + ref_unit:>20}{ratio:>9}")
    if failed:
        sys.exit(f"benches that failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
