"""The Outlier Exposure size study (paper section 4.1, Figure 6): how the heatmaps change as a
model sees more OE images in training.

One grid of ordinary runner jobs (`runner.run_grid`, so results go to <out>/results.csv and
predictions to <out>/predictions/, and a rerun skips finished jobs): for every method that can
use anomalies (supervision "labels" or "masks", e.g. FCDD and the gradient baseline) one job per
OE limit (the paper's 2, 8, 128, 2048 and all) and seed, `JobSpec(oe=..., oe_limit=...)`; a
method that cannot (supervision "none", e.g. the AE) is trained once per seed without OE, since
any limit would give it the same data: its jobs are deduplicated to one.

When the OE source is the data set itself (the same name or folder), its nominal class is left
out of the OE by default ("auto"), so no nominal class image is ever presented as an anomaly.
The paper uses a disjoint source (CIFAR-100 for CIFAR-10); a source that shares the test set's
anomalous classes, such as CIFAR-10's other classes, makes detection easier than the paper's.

Figure (figures/oe_size.png and .pdf), like Figure 6: rows are the OE sizes; column blocks are
the input, then for each OE method its heatmaps of three anomalous test samples, then each
nominal-only method (the AE) once in the first row as the reference. The three samples come from
three different anomalous categories spread over their sorted names, the first test image (by
key) of each. Heatmaps get the shared blur policy (`runner.postprocess`) and the paper's quantile
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

from xadbench import heatmaps, runner
from xadbench.errors import XadError
from xadbench.reports.figures import save_figure
from xadbench.profiles import check_preset
from xadbench.registry import methods as method_registry
from xadbench.runner import JobSpec

DEFAULT_LIMITS: tuple[int | None, ...] = (2, 8, 128, 2048, None)
ETA = 0.85
NORM = "local"
SAMPLES = 3
CMAP = "jet"
CELL_INCHES = 1.0
DPI = 150
DISPLAY_NAMES = {"fcdd": "FCDD", "grad": "Grad", "ae": "AE"}
AUTO = "auto"


def parse_limits(text: str) -> tuple[int | None, ...]:
    """"2,8,128,2048,all" → (2, 8, 128, 2048, None); duplicates dropped, order kept."""
    limits: list[int | None] = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        if part.lower() == "all":
            value = None
        else:
            try:
                value = int(part)
            except ValueError:
                raise XadError(f"--limits {text!r}: {part!r} is not a number; use e.g. --limits 2,8,128,2048,all") from None
            if value < 1:
                raise XadError(f"--limits {text!r}: an OE size must be at least 1; use e.g. --limits 2,8,128,2048,all")
        if value not in limits:
            limits.append(value)
    if not limits:
        raise XadError("--limits is empty; use e.g. --limits 2,8,128,2048,all")
    return tuple(limits)


def _limit_label(limit: int | None) -> str:
    return "all" if limit is None else str(limit)


def same_source(dataset: str, oe: str, root: str | None) -> bool:
    """Whether the OE source is the data set itself: the same name, or the same folder (a path,
    or "folder" standing for --root)."""
    if dataset == oe:
        return True

    def folder(name: str) -> Path | None:
        path = Path(root) if name == "folder" and root else Path(name)
        return path.resolve() if path.is_dir() else None

    return folder(dataset) is not None and folder(dataset) == folder(oe)


def plan_jobs(dataset: str, class_name: str, oe: str, *, methods: Sequence[str], limits: Sequence[int | None] = DEFAULT_LIMITS,
              seeds: Sequence[int] = (0,), root: str | None = None, preset: str = "cpu",
              oe_exclude: Sequence[str] | str = AUTO, weights: str | None = None, pretrained: bool = True,
              device: str = "auto") -> list[JobSpec]:
    """One job per (OE method, limit, seed) and one per (nominal-only method, seed)."""
    if oe_exclude == AUTO:
        oe_exclude = (class_name,) if same_source(dataset, oe, root) else ()
    common = dict(dataset=dataset, class_name=class_name, preset=preset, root=root, weights=weights,
                  pretrained=pretrained, device=device)
    specs = [runner.without_unused_outlier_exposure(
                 JobSpec(method=method, seed=seed, oe=oe, oe_limit=limit, oe_exclude=tuple(oe_exclude), **common))
             for method in methods for seed in seeds for limit in limits]
    return list(dict.fromkeys(specs))


def check_inputs(dataset: str, class_name: str, oe: str, root: str | None, methods: Sequence[str], preset: str) -> str:
    """Open the data set and the OE source and check the class; returns the class's canonical
    name. Every problem is one XadError line naming the option."""
    check_preset(preset)
    if not methods:
        raise XadError("--methods is empty; e.g. --methods fcdd,grad,ae")
    for method in methods:
        method_registry.get(method)
    if root is not None and not Path(root).is_dir():
        raise XadError(f"--root {root}: no such folder; pass the folder that holds the data set")
    if dataset not in _registered() and not Path(dataset).is_dir():
        raise XadError(f"--dataset {dataset}: neither a registered data set nor a folder; pass a name from "
                       "`xadbench datasets list` or a folder-per-class path")
    data = runner.open_dataset(dataset, root)
    classes = data.classes()
    if class_name not in classes:
        from xadbench.datasets.onevsrest import resolve_class

        class_name = resolve_class(class_name, classes, f"--class: data set {dataset}")
    if oe not in _registered() and not Path(oe).is_dir():
        raise XadError(f"--oe {oe}: neither a registered data set nor a folder; pass e.g. --oe cifar100 or a folder path")
    runner.open_dataset(oe, root).classes()  # a missing OE source fails here, not after the first job
    return class_name


def _registered() -> list[str]:
    from xadbench.registry import datasets

    return datasets.names()


def run_oe_study(specs: Sequence[JobSpec], out: Path, progress: runner.Progress | None = None) -> pd.DataFrame:
    """Run the grid (skipping finished jobs); returns the rows of these jobs."""
    results = runner.run_grid(specs, Path(out), progress)
    return results[results["job_id"].isin([s.job_id for s in specs])].reset_index(drop=True)


def write_table(specs: Sequence[JobSpec], results: pd.DataFrame, out: Path) -> Path:
    """tables/oe_size.csv: detection AUC (image_auc, first blur policy) per method and OE size,
    mean over seeds."""
    rows = []
    blur = specs[0].blur[0]
    for spec in specs:
        mine = results[(results["job_id"] == spec.job_id) & (results["metric"] == "image_auc") & (results["blur"] == blur)]
        if mine.empty:
            continue
        rows.append({"method": spec.method, "oe_size": _limit_label(spec.oe_limit) if spec.oe else "no OE",
                     "seed": spec.seed, "image_auc": float(mine["value"].iloc[0])})
    table = pd.DataFrame(rows, columns=["method", "oe_size", "seed", "image_auc"])
    summary = table.groupby(["method", "oe_size"], sort=False)["image_auc"].agg(["mean", "std", "count"]).reset_index()
    path = Path(out) / "tables" / "oe_size.csv"
    with runner.atomic_write(path) as handle:
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
        maps = runner.postprocess(p["anomaly_map"][index].astype(np.float32), blur, bool(p["method_smooth"]),
                                  int(p["blur_size"]), float(p["blur_sigma"]))
        return heatmaps.quantile_normalise(maps, eta, "local")
    maps = runner.postprocess(p["anomaly_map"].astype(np.float32), blur, bool(p["method_smooth"]),
                              int(p["blur_size"]), float(p["blur_sigma"]))
    return heatmaps.quantile_normalise(maps, eta, "global", labels=p["label"])[index]


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
            raise XadError(f"{path} is missing: job {spec.method} (OE {_limit_label(spec.oe_limit)}) has not finished; rerun the study")
        preds[spec] = runner.load_predictions(path)
    first = preds[specs[0]]
    for spec, p in preds.items():
        if not np.array_equal(p["key"], first["key"]):
            raise XadError(f"job {spec.job_id} scored another test set than job {specs[0].job_id}; rerun into a fresh --out")
    index = pick_samples(first["label"], first["category"], first["key"], samples)
    blur = specs[0].blur[0]

    blocks = [("Input", None)] + [(DISPLAY_NAMES.get(m, m), m) for m in oe_methods] + \
             [(f"{DISPLAY_NAMES.get(m, m)} (no OE)", m) for m in ref_methods]
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
            fig.text(0.1 / width, (box.y0 + box.y1) / 2, f"OE {_limit_label(limits[r])}", ha="left", va="center", fontsize=8)
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
