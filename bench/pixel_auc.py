"""Time and memory of xadbench's pooled pixel AUC against sklearn's roc_auc_score.

    python bench/pixel_auc.py [--pixels N] [--seed S]

The default, 67 million pixels, is about MVTec-AD bottle's test set at full resolution (83 images
of 900×900). Masks are random discs covering ~3 % of the pixels, nominal images included; scores
are noise plus a signal on the discs, rounded to float16 levels (stored float32) so that there
are many ties. All methods run in the same process on the same data. Time is measured without
tracemalloc; peak extra memory is a second run under tracemalloc (numpy reports its buffers to it).

Both of xadbench's paths run: sorting (float32 positives and negatives sorted, O(n log n)) and
counting (order-preserving float16 keys counted with np.bincount, O(n)); `pixel_auc` takes the
counting path for these maps. Targets for the path `pixel_auc` takes: |AUC difference| = 0,
>= 30x faster, peak extra memory <= 1/8 of sklearn's.
"""
from __future__ import annotations

import argparse
import gc
import time
import tracemalloc

import numpy as np
from sklearn.metrics import roc_auc_score

from xadbench.evaluator import pixel_auc, pixel_auc_counting, pixel_auc_sorting, roc_auc
from xadbench.provenance import cpu_model

SIDE = 900  # MVTec-AD bottle's resolution
NOMINAL_SHARE = 20 / 83  # bottle: 20 good of 83 test images
POSITIVE_RATE = 0.03


def make_data(pixels: int, seed: int):
    n_img = max(1, round(pixels / SIDE**2))
    side = max(2, int((pixels / n_img) ** 0.5))
    rng = np.random.default_rng(seed)
    n_nominal = int(round(n_img * NOMINAL_SHARE)) if n_img > 1 else 0
    # Disc radius so that the anomalous images' discs cover POSITIVE_RATE of all pixels.
    radius = side * (POSITIVE_RATE * n_img / max(1, n_img - n_nominal) / np.pi) ** 0.5
    scores = rng.standard_normal(n_img * side * side, dtype=np.float32)
    labels = np.zeros(n_img * side * side, dtype=bool)
    ys, xs = np.ogrid[:side, :side]
    for i in range(n_nominal, n_img):
        cy, cx = rng.uniform(radius, side - radius, 2) if side > 2 * radius else (side / 2,) * 2
        labels[i * side * side:(i + 1) * side * side] = (
            (ys - cy) ** 2 + (xs - cx) ** 2 <= radius**2
        ).ravel()
    scores[labels] += 1.5
    scores[:] = scores.astype(np.float16)  # float16 levels: heavy ties
    # The per-image views share the flat buffers: no extra memory.
    maps = list(scores.reshape(n_img, side, side))
    masks = list(labels.reshape(n_img, side, side))
    return scores, labels, maps, masks, n_img, side


def measure(fn):
    gc.collect()
    t0 = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - t0
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return float(value), seconds, peak



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=67_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"CPU: {cpu_model()}")
    scores, labels, maps, masks, n_img, side = make_data(args.pixels, args.seed)
    half_maps = [m.astype(np.float16) for m in maps]  # the same values, as predictions files hold them
    n_pos = int(labels.sum())
    print(
        f"{scores.size:,} pixels = {n_img} images of {side}x{side}, {n_pos:,} positives "
        f"({n_pos / scores.size:.2%}), {len(np.unique(scores)):,} distinct float32 scores"
    )

    runs = {
        "sklearn roc_auc_score (flat)": lambda: roc_auc_score(labels, scores),
        "xadbench roc_auc (flat)": lambda: roc_auc(scores, labels),
        "xadbench sorting (per image)": lambda: pixel_auc_sorting(maps, masks),
        "xadbench counting (float16 maps)": lambda: pixel_auc_counting(half_maps, masks),
        "xadbench pixel_auc (float32 maps)": lambda: pixel_auc(maps, masks),
    }
    results = {name: measure(fn) for name, fn in runs.items()}
    ref_auc, ref_s, ref_mem = results["sklearn roc_auc_score (flat)"]

    mib = 2**20
    header = (
        f"{'method':<32}{'AUC':>20}{'|diff|':>11}{'time s':>9}{'speed-up':>10}"
        f"{'peak MiB':>10}{'mem/skl':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, (auc, secs, mem) in results.items():
        print(
            f"{name:<32}{auc:>20.15f}{abs(auc - ref_auc):>11.1e}{secs:>9.2f}"
            f"{ref_s / secs:>9.1f}x{mem / mib:>10.0f}{mem / ref_mem:>9.3f}"
        )
    auc, secs, mem = results["xadbench pixel_auc (float32 maps)"]
    ok = auc == ref_auc and ref_s / secs >= 30 and mem <= ref_mem / 8
    verdict = "MET" if ok else "MISSED"
    print(f"pixel_auc targets (|diff| = 0, >= 30x faster, memory <= 1/8 of sklearn): {verdict}")


if __name__ == "__main__":
    main()
