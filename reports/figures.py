"""Heatmap grids and ROC curves of a run, redrawn from its saved predictions (no re-training).

Grid (like the paper's Figures 1 and 18), one per (data set, class, protocol, preset, seed):
rows are the input, one heatmap row per method of the run and the ground-truth mask when the data
set has masks; columns are a block of nominal and a block of anomalous test samples, each chosen
evenly across the order of the anomaly score of FCDD (of the run's first method that is not a
reference map when FCDD is absent) and shown with that score increasing from left to right, and a last "mean map" column:
the mean test image, each method's own mean map over the test set (what a map that ignores the
image would show, `xadbench.sanity`) and the defect frequency per pixel. Heatmaps get the shared blur
policy (`runner.postprocess`: baselines blurred with FCDD's kernel, FCDD as it is) unless
blur="none", then the paper's quantile normalisation (appendix C) to [0, 1], so one colour scale
serves the whole figure. Defaults per appendix C: MVTec-AD local η=0.97, CIFAR-10 local η=0.85,
Fashion-MNIST global η=0.85, ImageNet global η=0.97, Pascal VOC global η=0.99; "global" takes
the label-balanced test set of the method as the reference.

ROC curves, one figure per (data set, class, protocol, preset) and level: every method in one
axes, one line per seed. Pixel level (when masks exist) uses the maps at the model's resolution
after the blur policy and, beyond MAX_ROC_PIXELS pixels, a fixed random subsample of them, so its
AUCs are close to, not equal to, results.csv's exact pooled pixel AUC.

Figures are drawn on matplotlib `Figure` objects directly (no pyplot), so no GUI backend is used.
"""
from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from sklearn.metrics import auc, roc_curve

from xadbench.errors import XadError
from xadbench.heatmaps import quantile_normalise
from xadbench.reports.tables import load_results
from xadbench.runner import BLUR_POLICIES, atomic_write, load_predictions, postprocess
from xadbench.sanity import REFERENCE_METHODS

NORMS = ("auto", "local", "global")
#: Appendix C's choice of reference set and η per data set profile.
DISPLAY_DEFAULTS = {
    "mvtec": ("local", 0.97),
    "cifar10": ("local", 0.85),
    "fmnist": ("global", 0.85),
    "imagenet": ("global", 0.97),
    "voc": ("global", 0.99),
}
FALLBACK_DISPLAY = DISPLAY_DEFAULTS["mvtec"]
MAX_ROC_PIXELS = 200_000
CMAP = "jet"
CELL_INCHES = 1.1
DPI = 120


def display_defaults(profile: str) -> tuple[str, float]:
    """Appendix C's (reference, η) for a data set profile (saved with the predictions)."""
    return DISPLAY_DEFAULTS.get(profile, FALLBACK_DISPLAY)


def check_options(norm: str, eta: float | None, blur: str, samples: int) -> None:
    if norm not in NORMS:
        raise XadError(f"--norm {norm!r} is unknown; use {', '.join(NORMS)} (auto: the paper's choice per data set)")
    if eta is not None and not 0 < eta <= 1:
        raise XadError(f"--eta {eta} is out of range; use a quantile in (0, 1], e.g. --eta 0.97")
    if blur not in BLUR_POLICIES:
        raise XadError(f"--blur {blur!r} is unknown; use {' or '.join(BLUR_POLICIES)}")
    if samples < 1:
        raise XadError(f"--samples {samples}: need at least 1 sample per block")


def _slug(*parts: object) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts))


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        return load_predictions(path)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:  # EOFError: an empty file
        raise XadError(f"{path}: unreadable predictions ({type(exc).__name__}: {exc}); delete it and rerun the job") from None


def _aligned(preds: dict[str, dict[str, np.ndarray]], where: str) -> dict[str, dict[str, np.ndarray]]:
    """Every method's arrays in the test-set order of the first method (matched by sample key)."""
    first = next(iter(preds.values()))
    keys = first["key"]
    out = {}
    for label, p in preds.items():
        if np.array_equal(p["key"], keys):
            out[label] = p
            continue
        position = {k: i for i, k in enumerate(p["key"])}
        if set(position) != set(keys):
            raise XadError(f"{where}: {label} scored other test images than {next(iter(preds))}; rerun both jobs")
        order = np.array([position[k] for k in keys])
        out[label] = {k: (v[order] if v.ndim and len(v) == len(keys) else v) for k, v in p.items()}
    return out


def pick_columns(scores: np.ndarray, labels: np.ndarray, label: int, n: int) -> np.ndarray:
    """Indices of up to n samples with `label`, evenly spread over their score order, ascending."""
    index = np.flatnonzero(labels == label)
    index = index[np.argsort(scores[index], kind="stable")]
    if len(index) > n:
        index = index[np.round(np.linspace(0, len(index) - 1, n)).astype(int)]
    return index


def processed_maps(p: dict[str, np.ndarray], blur: str, index: np.ndarray | slice = slice(None)) -> np.ndarray:
    """A method's maps (those at `index`) after the shared blur policy, float32."""
    return postprocess(p["anomaly_map"][index].astype(np.float32), blur, bool(p["method_smooth"]),
                       int(p["blur_size"]), float(p["blur_sigma"]))


def grid_heatmaps(p: dict[str, np.ndarray], columns: np.ndarray, norm: str, eta: float, blur: str) -> np.ndarray:
    """The normalised heatmaps of the chosen columns, in [0, 1]."""
    if norm == "local":
        return quantile_normalise(processed_maps(p, blur, columns), eta, "local")
    return quantile_normalise(processed_maps(p, blur), eta, "global", labels=p["label"])[columns]


def _rgb(cells: np.ndarray, kind: str) -> np.ndarray:
    """(N, H, W, 3) floats in [0, 1]: images (N, C, H, W) uint8, heatmaps in [0, 1] coloured, masks grey."""
    if kind == "image":
        cells = np.moveaxis(cells, 1, -1) / 255.0
        return np.repeat(cells, 3, axis=-1) if cells.shape[-1] == 1 else cells
    if kind == "mask":
        return np.repeat(cells[..., None].astype(float), 3, axis=-1)
    return matplotlib.colormaps[CMAP](cells)[..., :3]


def draw_grid(images: np.ndarray, heatmaps: dict[str, np.ndarray], masks: np.ndarray | None,
              scores: np.ndarray, blocks: list[tuple[str, int]], title: str) -> Figure:
    """One figure: images (N, C, H, W) uint8, heatmaps {row label: (N, H, W) in [0, 1]}, masks
    (N, H, W) or None, the ordering scores (N,), and the column blocks as (name, count).

    The cells are tiled into one picture in one axes: far faster to draw than an axes per cell.
    """
    rows = [("input", _rgb(images, "image"))]
    rows += [(label, _rgb(maps, "heatmap")) for label, maps in heatmaps.items()]
    if masks is not None:
        rows.append(("ground truth", _rgb(masks, "mask")))
    h, w = images.shape[-2:]
    pad, gap = max(1, w // 16), w // 3
    xs, x = [], 0
    for b, (_, count) in enumerate(blocks):
        x += gap if b else 0
        xs += [x + i * (w + pad) for i in range(count)]
        x = xs[-1] + w + pad
    ys = [r * (h + pad) for r in range(len(rows))]
    picture = np.ones((ys[-1] + h, xs[-1] + w, 3), dtype=np.float32)
    for y, (_, cells) in zip(ys, rows):
        for x, cell in zip(xs, cells):
            picture[y:y + h, x:x + w] = cell

    inch = CELL_INCHES / w  # inches per picture pixel
    left, right, top, bottom = 1.2, 0.8, 0.9, 0.1
    width, height = left + right + picture.shape[1] * inch, top + bottom + picture.shape[0] * inch
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, picture.shape[1] * inch / width, picture.shape[0] * inch / height))
    ax.imshow(picture, interpolation="antialiased")
    ax.set_axis_off()
    for y, (label, _) in zip(ys, rows):
        ax.text(-2 * pad, y + h / 2, label, ha="right", va="center", fontsize=9)
    for x, score in zip(xs, scores):
        if np.isfinite(score):
            ax.text(x + w / 2, -pad, f"{score:.3g}", ha="center", va="bottom", fontsize=7)
    start = 0
    for name, count in blocks:
        centre = (xs[start] + xs[start + count - 1] + w) / 2
        ax.text(centre, -0.3 * h, name, ha="center", va="bottom", fontsize=10)
        start += count
    heat_top = top + ys[1] * inch
    heat_bottom = top + (ys[len(heatmaps)] + h) * inch
    colourbar = fig.add_axes(((width - right + 0.15) / width, 1 - heat_bottom / height,
                              0.12 / width, (heat_bottom - heat_top) / height))
    fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps[CMAP]), cax=colourbar)
    colourbar.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9, y=1 - 0.08 / height, va="top", wrap=True)
    return fig


def draw_roc(curves: list[tuple[str, np.ndarray, np.ndarray]], title: str, approximate: bool) -> Figure:
    """All methods in one axes; curves are (label, fpr, tpr), several per label for several seeds."""
    fig = Figure(figsize=(5.2, 5))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    labels = list(dict.fromkeys(label for label, _, _ in curves))
    colours = matplotlib.colormaps["tab10"]
    for i, label in enumerate(labels):
        mine = [(fpr, tpr) for name, fpr, tpr in curves if name == label]
        aucs = [auc(fpr, tpr) for fpr, tpr in mine]
        summary = f"{np.mean(aucs):.3f}" + (f" ± {np.std(aucs, ddof=1):.3f}" if len(aucs) > 1 else "")
        for j, (fpr, tpr) in enumerate(mine):
            ax.plot(fpr, tpr, color=colours(i % 10), linewidth=1.2, alpha=0.85,
                    label=f"{label} (AUC {'≈' if approximate else ''}{summary})" if j == 0 else None)
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.title.set_fontsize(9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write a figure atomically, in the format its suffix names."""
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=path.suffix[1:], dpi=dpi)
    return path


def _pixel_sample(masks: np.ndarray) -> np.ndarray | None:
    """Fixed pixel indices for the pixel ROC (all of them when few): same masks, same pixels."""
    n = masks.size
    if n <= MAX_ROC_PIXELS:
        return None
    return np.sort(np.random.default_rng(0).choice(n, MAX_ROC_PIXELS, replace=False))


def _grid(preds: dict[str, dict[str, np.ndarray]], methods: dict[str, str], caption: str,
          norm: str, eta: float | None, blur: str, samples: int) -> Figure:
    """The heatmap grid of one job group (one seed), its predictions aligned."""
    first = next(iter(preds.values()))
    detectors = [label for label, m in methods.items() if m not in REFERENCE_METHODS] or list(preds)
    order = next((label for label, m in methods.items() if m == "fcdd"), detectors[0])
    reference, quantile = display_defaults(str(first["profile"]))
    reference = reference if norm == "auto" else norm
    if len(np.unique(first["label"])) < 2:
        reference = "local"  # a balanced global reference needs both labels; the title says so
    quantile = quantile if eta is None else eta
    scores, labels = preds[order]["score"], first["label"]
    blocks = [(name, pick_columns(scores, labels, value, samples)) for name, value in (("nominal", 0), ("anomalous", 1))]
    blocks = [(name, index) for name, index in blocks if len(index)]
    columns = np.concatenate([index for _, index in blocks])
    heatmaps = {label: grid_heatmaps(p, columns, reference, quantile, blur) for label, p in preds.items()}
    # The "mean map" column: the mean test image, each method's own mean map over the test set
    # (xadbench.sanity's input-dependence reference, normalised on its own) and how often each
    # pixel is anomalous.
    images = np.concatenate([first["image"][columns], first["image"].mean(0).round().astype(np.uint8)[None]])
    for label, p in preds.items():
        mean = processed_maps(p, blur).mean(0)[None]
        heatmaps[label] = np.concatenate([heatmaps[label], quantile_normalise(mean, quantile, "local")])
    masks = None
    if "mask" in first:
        frequency = first["mask"].mean(0)
        masks = np.concatenate([first["mask"][columns], (frequency / max(frequency.max(), 1e-12))[None]])
    title = (f"{caption}. Columns by {order} score (above), increasing; last: means over the test set "
             f"(image, each method's mean map, defect frequency). Heatmaps: {reference} quantile norm, "
             f"η={quantile:g}, blur {blur}")
    return draw_grid(images, heatmaps, masks, np.append(scores[columns], np.nan),
                     [(name, len(index)) for name, index in blocks] + [("mean map", 1)], title)


def _roc_curves(preds: dict[str, dict[str, np.ndarray]], blur: str) -> dict[str, list]:
    """(label, fpr, tpr) per method at image level and, where masks exist, pixel level."""
    curves: dict[str, list] = {"image": [], "pixel": []}
    for label, p in preds.items():
        if len(np.unique(p["label"])) == 2:
            curves["image"].append((label, *roc_curve(p["label"], p["score"])[:2]))
        if "mask" in p and p["mask"].any() and not p["mask"].all():
            truth, maps = p["mask"].ravel(), processed_maps(p, blur).ravel()
            pixels = _pixel_sample(p["mask"])
            if pixels is not None:
                truth, maps = truth[pixels], maps[pixels]
            curves["pixel"].append((label, *roc_curve(truth, maps)[:2]))
    return curves


def write_figures(run_dir: Path, norm: str = "auto", eta: float | None = None, blur: str = "gaussian",
                  samples: int = 6) -> list[Path]:
    """Draw every heatmap grid (PNG and PDF) and ROC figure (PNG) of a run into RUN_DIR/figures/
    from RUN_DIR/results.csv and RUN_DIR/predictions/; returns the paths written.

    norm: "local" (each map against itself), "global" (against the label-balanced test set) or
    "auto" (appendix C's choice per data set); eta: the quantile η (default per appendix C);
    blur: the shared blur policy, "gaussian" or "none"; samples: columns per block.
    """
    check_options(norm, eta, blur, samples)
    run_dir = Path(run_dir)
    jobs = load_results(run_dir).drop_duplicates("job_id")
    out = run_dir / "figures"
    paths, missing, found = [], [], 0
    for (dataset, class_name, protocol, preset), class_jobs in jobs.groupby(
            ["dataset", "class", "protocol", "preset"], sort=False):
        name = Path(dataset).name
        curves: dict[str, list] = {"image": [], "pixel": []}
        seeds, sampled = 0, False
        for seed, seed_jobs in class_jobs.groupby("seed", sort=False):
            preds, methods = {}, {}
            for label, method, job_id in zip(seed_jobs["column"], seed_jobs["method"], seed_jobs["job_id"]):
                path = run_dir / "predictions" / f"{job_id}.npz"
                if path.is_file():
                    preds[label], methods[label] = _load(path), method
                else:
                    missing.append(path.name)
            if not preds:
                continue
            found, seeds = found + len(preds), seeds + 1
            caption = f"{name} / {class_name}: {protocol}, preset {preset}, seed {seed}"
            preds = _aligned(preds, caption)
            fig = _grid(preds, methods, caption, norm, eta, blur, samples)
            stem = _slug("grid", name, class_name, protocol, preset, f"seed{seed}")
            paths += [save_figure(fig, out / f"{stem}.png"), save_figure(fig, out / f"{stem}.pdf")]
            for level, level_curves in _roc_curves(preds, blur).items():
                curves[level] += level_curves
            sampled = sampled or any("mask" in p and p["mask"].size > MAX_ROC_PIXELS for p in preds.values())
        for level, level_curves in curves.items():
            if level_curves:
                title = (f"{name} / {class_name}: {level}-level ROC\n{protocol}, preset {preset}, "
                         f"{seeds} seed{'s' if seeds != 1 else ''}{', blur ' + blur if level == 'pixel' else ''}")
                fig = draw_roc(level_curves, title, approximate=level == "pixel" and sampled)
                paths.append(save_figure(fig, out / f"{_slug('roc', level, name, class_name, protocol, preset)}.png"))
    if not found:
        raise XadError(f"{run_dir / 'predictions'} holds none of the predictions of results.csv's jobs; figures are "
                       "drawn from the .npz files `xadbench run` saves there (rerun the jobs to recreate them)")
    if missing:
        warnings.warn(f"{len(missing)} job(s) of results.csv have no predictions in {run_dir / 'predictions'} "
                      f"and are left out of the figures (e.g. {missing[0]})", stacklevel=2)
    return paths
