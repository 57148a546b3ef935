"""Table and figure of the Outlier Exposure size study (paper section 4.1, Figure 6; the grid
of jobs: `xadbench.studies.oe_size`), read from its run folder.

Figure (figures/oe_size.png and .pdf), like Figure 6: rows are the OE sizes; column blocks are
the input, then for each OE method its heatmaps of three anomalous test samples, then each
nominal-only method (the AE) once in the first row as the reference. The three samples come from
three different anomalous categories spread over their sorted names, the first test image (by
key) of each. Heatmaps get the post-processor their predictions record (`heatmaps.saved_maps`:
the shared blur policy) and the paper's quantile
normalisation for CIFAR-10's Figure 6 (appendix C): η = 0.85, each heatmap against itself
("local"). tables/oe_size.csv lists the detection AUC per method and OE size (mean over seeds).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from xadbench import heatmaps, run_folder
from xadbench.defaults import CMAP
from xadbench.errors import XadError
from xadbench.files import atomic_write
from xadbench.registry import methods
from xadbench.reports.figures import save_figure
from xadbench.runner import JobSpec
from xadbench.studies.oe_size import limit_label

ETA = 0.85
NORM = "local"
SAMPLES = 3
CELL_INCHES = 1.0
DPI = 150


def write_table(specs: Sequence[JobSpec], results: pd.DataFrame, out: Path) -> Path:
    """tables/oe_size.csv: detection AUC (image_auc, first blur policy) per method and OE size,
    mean over seeds."""
    rows = []
    blur = specs[0].blur[0]
    for spec in specs:
        mine = results[(results["job_id"] == spec.job_id) & (results["metric"] == "image_auc") & (results["blur"] == blur)]
        if mine.empty:
            continue
        rows.append({"method": spec.method, "oe_size": limit_label(spec.oe_limit) if spec.oe else "no OE",
                     "seed": spec.seed, "image_auc": float(mine["value"].iloc[0])})
    table = pd.DataFrame(rows, columns=["method", "oe_size", "seed", "image_auc"])
    summary = table.groupby(["method", "oe_size"], sort=False)["image_auc"].agg(["mean", "std", "count"]).reset_index()
    path = Path(out) / "tables" / "oe_size.csv"
    with atomic_write(path) as handle:
        summary.rename(columns={"mean": "image_auc", "std": "image_auc std", "count": "seeds"}).to_csv(handle, index=False)
    return path


def pick_samples(labels: np.ndarray, categories: np.ndarray, keys: np.ndarray, n: int = SAMPLES) -> np.ndarray:
    """n anomalous test indices from n different categories evenly spread over the sorted
    anomalous categories (fewer categories: the next keys of the same ones), each the first by key."""
    anomalous = np.flatnonzero(np.asarray(labels) == 1)
    if len(anomalous) == 0:
        raise XadError("the test set has no anomalous images to show")
    by_category: dict[str, list[int]] = {}
    for i in sorted(anomalous, key=lambda i: str(keys[i])):
        by_category.setdefault(str(categories[i]), []).append(int(i))
    names = sorted(by_category)
    chosen = [names[int(round(j))] for j in np.linspace(0, len(names) - 1, min(n, len(names)))]
    picked = [by_category[name][0] for name in chosen]
    rest = [i for name in names for i in by_category[name] if i not in picked]
    return np.array((picked + rest)[:n])


def _maps(p: dict[str, np.ndarray], blur: str, index: np.ndarray, eta: float, norm: str) -> np.ndarray:
    if norm == "local":
        return heatmaps.quantile_normalise(heatmaps.saved_maps(p, blur, index), eta, "local")
    return heatmaps.quantile_normalise(heatmaps.saved_maps(p, blur), eta, "global", labels=p["label"])[index]


def draw_figure(specs: Sequence[JobSpec], out: Path, *, eta: float = ETA, norm: str = NORM, samples: int = SAMPLES,
                seed: int | None = None) -> Figure:
    """The Figure-6-like grid for one seed (the first of the specs by default)."""
    if not 0 < eta <= 1:
        raise XadError(f"--eta {eta} is out of range; use a quantile in (0, 1], e.g. --eta 0.85")
    if norm not in heatmaps.REFERENCES:
        raise XadError(f"--norm {norm!r} is unknown; use local or global")
    seed = specs[0].seed if seed is None else seed
    specs = [s for s in specs if s.seed == seed]
    oe_methods = list(dict.fromkeys(s.method for s in specs if s.oe))
    ref_methods = list(dict.fromkeys(s.method for s in specs if not s.oe))
    limits = list(dict.fromkeys(s.oe_limit for s in specs if s.oe))
    preds: dict[JobSpec, dict[str, np.ndarray]] = {}
    for spec in specs:
        path = Path(out) / "predictions" / f"{spec.job_id}.npz"
        if not path.is_file():
            raise XadError(f"{path} is missing: job {spec.method} (OE {limit_label(spec.oe_limit)}) has not finished; rerun the study")
        preds[spec] = run_folder.load_predictions(path)
    first = preds[specs[0]]
    for spec, p in preds.items():
        if not np.array_equal(p["key"], first["key"]):
            raise XadError(f"job {spec.job_id} scored another test set than job {specs[0].job_id}; rerun into a fresh --out")
    index = pick_samples(first["label"], first["category"], first["key"], samples)
    blur = specs[0].blur[0]

    blocks = [("Input", None)] + [(methods.display_name(m), m) for m in oe_methods] + \
             [(f"{methods.display_name(m)} (no OE)", m) for m in ref_methods]
    n_rows, per = max(1, len(limits)), len(index)
    widths: list[float] = []
    slots = []
    for b in range(len(blocks)):
        if b:
            widths.append(0.2)
        slots.append(list(range(len(widths), len(widths) + per)))
        widths += [1.0] * per
    widths += [0.1, 0.12]
    left, top, bottom, right = 0.75, 0.7, 0.1, 0.45
    fig = Figure(figsize=(left + right + CELL_INCHES * sum(widths), top + bottom + CELL_INCHES * n_rows))
    width, height = fig.get_size_inches()
    grid = fig.add_gridspec(n_rows, len(widths), width_ratios=widths, wspace=0.04, hspace=0.04,
                            left=left / width, right=1 - right / width, top=1 - top / height, bottom=bottom / height)
    cmap = matplotlib.colormaps[CMAP]
    row_axes: dict[int, object] = {}
    for (title, method), slot in zip(blocks, slots):
        for r in range(n_rows):
            limit = limits[r] if limits else None
            if method is None or method in ref_methods:
                if r > 0:
                    continue
                p = preds[next(s for s in specs if s.method == method and not s.oe)] if method else first
                cells = np.moveaxis(p["image"][index], 1, -1) if method is None else _maps(p, blur, index, eta, norm)
            else:
                spec = next(s for s in specs if s.method == method and s.oe and s.oe_limit == limit)
                cells = _maps(preds[spec], blur, index, eta, norm)
            for c, s in enumerate(slot):
                ax = fig.add_subplot(grid[r, s])
                row_axes.setdefault(r, ax)
                ax.set_xticks([])
                ax.set_yticks([])
                if method is None and cells[c].shape[-1] == 1:
                    ax.imshow(cells[c][..., 0], cmap="gray", vmin=0, vmax=255)
                elif method is None:
                    ax.imshow(cells[c])
                else:
                    ax.imshow(cells[c], cmap=cmap, vmin=0, vmax=1)
                if r == 0 and c == per // 2:
                    ax.set_title(title, fontsize=9)
    if limits:
        for r, ax in row_axes.items():
            box = ax.get_position()
            fig.text(0.1 / width, (box.y0 + box.y1) / 2, f"OE {limit_label(limits[r])}", ha="left", va="center", fontsize=8)
    colourbar = fig.add_subplot(grid[:, -1])
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=colourbar)
    colourbar.tick_params(labelsize=7)
    categories = ", ".join(str(first["category"][i]) for i in index)
    fig.suptitle(f"{Path(specs[0].dataset).name} / {specs[0].class_name}: heatmaps by OE size (OE: {Path(str(specs[0].oe)).name}); "
                 f"samples: {categories}; η={eta}, {norm} normalisation; seed {seed}", fontsize=8,
                 y=1 - 0.08 / height, va="top")
    return fig


def write_figure(specs: Sequence[JobSpec], out: Path, **options) -> list[Path]:
    """figures/oe_size.png and .pdf."""
    fig = draw_figure(specs, out, **options)
    return [save_figure(fig, Path(out) / "figures" / f"oe_size.{suffix}", dpi=DPI) for suffix in ("png", "pdf")]
