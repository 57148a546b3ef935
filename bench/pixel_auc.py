"""Time and memory of xadbench's pooled pixel AUC against sklearn's roc_auc_score, and its exactness
against an exact rational Mann-Whitney count.

    python bench/pixel_auc.py [--pixels N] [--seed S] [--kinds levels,continuous]

The default, 67 million pixels, is about MVTec-AD bottle's test set at full resolution (83 images
of 900×900). Masks are random discs covering ~3 % of the pixels, nominal images included; scores
are noise plus a signal on the discs, in two kinds: "levels" rounds them to float16 levels (stored
float32: heavy ties, like maps saved as float16) and "continuous" keeps every float32 bit (like a
method's maps resized to the masks, what `xadbench run` scores).

Rows per kind: sklearn; xadbench's two paths, sorting (uint32 order keys sorted, O(n log n)) and
counting (float16-level keys counted with np.bincount, O(n); only for levels); the path
`pixel_auc` takes; and, for continuous maps, an LSD radix count of the uint32 keys (two stable
uint16 argsorts, numpy's O(n) radix sort): the O(n) alternative for arbitrary float32, shown
so that the reason `pixel_auc` sorts such maps is visible. |diff| is against the exact AUC, a
fraction computed independently (np.unique of positives and negatives, integer cumulative
counts) and rounded once to float64: 0 means the result is the exact AUC correctly rounded;
sklearn's own rounding (float cumulative sums and a trapezoid) shows in its row. Time and peak extra memory (tracemalloc; numpy
reports its buffers to it) come from one run each. Targets for `pixel_auc`: |diff| = 0,
>= 30x faster than sklearn, peak memory <= 1/8 of sklearn's.
"""
from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from fractions import Fraction

import numpy as np
from sklearn.metrics import roc_auc_score

from xadbench.evaluator import pixel_auc, pixel_auc_counting, pixel_auc_sorting
from xadbench.metrics.counts import order_keys
from xadbench.provenance import cpu_model

SIDE = 900  # MVTec-AD bottle's resolution
NOMINAL_SHARE = 20 / 83  # bottle: 20 good of 83 test images
POSITIVE_RATE = 0.03
KINDS = ("levels", "continuous")


def make_data(pixels: int, seed: int, kind: str):
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
    if kind == "levels":
        scores[:] = scores.astype(np.float16)
    # The per-image views share the flat buffers: no extra memory.
    maps = list(scores.reshape(n_img, side, side))
    masks = list(labels.reshape(n_img, side, side))
    return scores, labels, maps, masks, n_img, side


def exact_auc(scores: np.ndarray, labels: np.ndarray) -> Fraction:
    """The Mann-Whitney AUC as a fraction: Σ over positive values v of count(v) · (2·#neg < v +
    #neg == v), over 2·P·N, from np.unique of each class (float comparisons, no keys)."""
    pos_values, pos_counts = np.unique(scores[labels], return_counts=True)
    neg_values, neg_counts = np.unique(scores[~labels], return_counts=True)
    cumulative = np.concatenate([[0], np.cumsum(neg_counts)])
    below = cumulative[np.searchsorted(neg_values, pos_values, "left")]
    equal = cumulative[np.searchsorted(neg_values, pos_values, "right")] - below
    twice = sum(int(c) * (2 * int(b) + int(e)) for c, b, e in zip(pos_counts, below, equal))
    return Fraction(twice, 2 * int(pos_counts.sum()) * int(neg_counts.sum()))


def lsd_radix_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact AUC from the uint32 keys sorted by two stable uint16 argsorts (low half, then high),
    counted over runs of equal keys: O(n), for comparison with sorting."""
    keys = order_keys(scores)
    first = np.argsort(keys.astype(np.uint16), kind="stable")
    keys, labels = keys[first], labels[first]
    del first
    second = np.argsort((keys >> 16).astype(np.uint16), kind="stable")
    keys, labels = keys[second], labels[second]
    del second
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    pos = np.add.reduceat(labels.astype(np.int64), starts)
    neg = np.diff(np.concatenate([starts, [len(keys)]])) - pos
    below = np.cumsum(neg) - neg
    twice = int(np.dot(pos, 2 * below + neg))
    return twice / (2 * int(pos.sum()) * int(neg.sum()))


def measure(fn):
    """(value, seconds, peak extra bytes) of one call under tracemalloc."""
    gc.collect()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return float(value), seconds, peak


def bench_kind(kind: str, pixels: int, seed: int) -> bool:
    scores, labels, maps, masks, n_img, side = make_data(pixels, seed, kind)
    n_pos = int(labels.sum())
    print(
        f"\n[{kind}] {scores.size:,} pixels = {n_img} images of {side}x{side}, {n_pos:,} positives "
        f"({n_pos / scores.size:.2%}), {len(np.unique(scores)):,} distinct float32 scores"
    )
    exact = exact_auc(scores, labels)
    runs = {"sklearn roc_auc_score (flat)": lambda: roc_auc_score(labels, scores),
            "xadbench sorting (per image)": lambda: pixel_auc_sorting(maps, masks)}
    if kind == "levels":
        runs["xadbench counting (per image)"] = lambda: pixel_auc_counting(maps, masks)
    else:
        runs["LSD radix, 2 uint16 passes (flat)"] = lambda: lsd_radix_auc(scores, labels)
    runs["xadbench pixel_auc (auto)"] = lambda: pixel_auc(maps, masks)
    results = {name: measure(fn) for name, fn in runs.items()}
    _, ref_s, ref_mem = results["sklearn roc_auc_score (flat)"]

    mib = 2**20
    header = (f"{'method':<36}{'AUC':>20}{'|diff|':>10}{'time s':>9}{'speed-up':>10}"
              f"{'peak MiB':>10}{'mem/skl':>9}")
    print(f"exact AUC = {exact.numerator}/{exact.denominator} ~ {float(exact):.17f}")
    print(header)
    print("-" * len(header))
    for name, (auc, secs, mem) in results.items():
        diff = abs(auc - float(exact))
        print(f"{name:<36}{auc:>20.17f}{diff:>10.1e}{secs:>9.2f}"
              f"{ref_s / secs:>9.1f}x{mem / mib:>10.0f}{mem / ref_mem:>9.3f}")
    auc, secs, mem = results["xadbench pixel_auc (auto)"]
    ok = auc == float(exact) and ref_s / secs >= 30 and mem <= ref_mem / 8
    print(f"pixel_auc on {kind} maps: |diff| = {abs(auc - float(exact)):.1e}, {ref_s / secs:.1f}x sklearn, "
          f"memory {mem / ref_mem:.3f} of sklearn's: targets {'MET' if ok else 'MISSED'}")
    print(f"RATIO pixel_auc_{kind}_vs_sklearn {secs:.3f} s {ref_s:.3f} s {ref_s / secs:.1f}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=67_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", default=",".join(KINDS))
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"--kinds: unknown {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}")
    print(f"CPU: {cpu_model()}")
    for kind in kinds:
        bench_kind(kind, args.pixels, args.seed)


if __name__ == "__main__":
    main()
