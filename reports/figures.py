"""Heatmap grids and ROC curves of a run, redrawn from its saved predictions (no re-training).

Grid (like the paper's Figures 1 and 18), one per (data set, class, protocol, preset, seed):
rows are the input, one heatmap row per method of the run and the ground-truth mask when the data
set has masks; columns are a block of nominal and a block of anomalous test samples, each chosen
evenly across the order of the anomaly score of FCDD (of the run's first method that is not a
reference map when FCDD is absent) and shown with that score increasing from left to right (every
method's own score is written above its cells), and a last "mean map" column:
the mean test image, each method's own mean map over the test set (what a map that ignores the
image would show, `xadbench.sanity`) and the defect frequency per pixel. Heatmaps get the shared blur
policy (the post-processor each predictions file records, `heatmaps.PostProcessor`: baselines
blurred with FCDD's kernel, FCDD as it is) unless
blur="none", then the paper's quantile normalisation (appendix C) to [0, 1], so one colour scale
serves the whole figure. Defaults per appendix C: MVTec-AD local η=0.97, CIFAR-10 local η=0.85,
Fashion-MNIST global η=0.85, ImageNet global η=0.97, Pascal VOC global η=0.99; "global" takes
the label-balanced test set of the method as the reference.

Curves, one figure per (data set, class, protocol, preset) and kind: the image-level ROC, the
pooled pixel-level ROC and the PRO curve up to FPR 0.3, every method in one axes with its
bootstrap band (`reports.curves`), as PNG, PDF and SVG.

Overview, one per (data set, protocol, preset) (seaborn point plots, one panel per AUC metric of
results.csv): per class, every method's mean over seeds with ± one standard deviation over seeds
as error bars, the reference maps in grey, chance (0.5) dashed; as PNG and SVG.

File names carry every display option that changes a picture (norm, η, blur, colour map), so
figures drawn with other options sit beside each other instead of overwriting them.

Figures are drawn on matplotlib `Figure` objects directly (no pyplot), so no GUI backend is used.
"""
from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from xadbench.defaults import CMAP, RESAMPLES
from xadbench.errors import XadError
from xadbench.files import atomic_write, safe_name
from xadbench.heatmaps import BLUR_POLICIES, quantile_normalise, saved_maps
from xadbench.metrics.aupro import MAX_FPR
from xadbench.metrics.bootstrap import CONFIDENCE
from xadbench.metrics.registry import get_metric, list_metrics
from xadbench.profiles import PROFILES
from xadbench.registry import methods as method_plugins
from xadbench.reports.curves import curve_bands, curve_legends, draw_curves
from xadbench.reports.intervals import IntervalTable, run_intervals
from xadbench.reports.run import Run
from xadbench.reports.table_formats import tex_escape

NORMS = ("auto", "local", "global")
#: The display of a profile this version does not know (a run folder of another version).
FALLBACK_DISPLAY = PROFILES["mvtec"].display
#: The text width of a two-column paper (inches), the width of the overview and grid figures.
PAGE_INCHES = 7.2
DPI = 120


def display_defaults(profile: str) -> tuple[str, float]:
    """Appendix C's (reference, η) for a data set profile (saved with the predictions)."""
    return PROFILES[profile].display if profile in PROFILES else FALLBACK_DISPLAY


def check_options(norm: str, eta: float | None, blur: str, samples: int, cmap: str = CMAP) -> None:
    if norm not in NORMS:
        raise XadError(f"--norm {norm!r} is unknown; use {', '.join(NORMS)} (auto: the paper's choice per data set)")
    if eta is not None and not 0 < eta <= 1:
        raise XadError(f"--eta {eta} is out of range; use a quantile in (0, 1], e.g. --eta 0.97")
    if blur not in BLUR_POLICIES:
        raise XadError(f"--blur {blur!r} is unknown; use {' or '.join(BLUR_POLICIES)}")
    if samples < 1:
        raise XadError(f"--samples {samples}: need at least 1 sample per block")
    if cmap not in matplotlib.colormaps:
        close = difflib.get_close_matches(cmap, list(matplotlib.colormaps), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; e.g. jet, viridis, inferno"
        raise XadError(f"--cmap {cmap!r} is not a matplotlib colour map{hint}")


def _slug(*parts: object) -> str:
    return safe_name("_".join(str(p) for p in parts))


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


def grid_heatmaps(p: dict[str, np.ndarray], columns: np.ndarray, norm: str, eta: float, blur: str) -> np.ndarray:
    """The normalised heatmaps of the chosen columns, in [0, 1]."""
    if norm == "local":
        return quantile_normalise(saved_maps(p, blur, columns), eta, "local")
    return quantile_normalise(saved_maps(p, blur), eta, "global", labels=p["label"])[columns]


def _rgb(cells: np.ndarray, kind: str, cmap: str = CMAP) -> np.ndarray:
    """(N, H, W, 3) floats in [0, 1]: images (N, C, H, W) uint8, heatmaps in [0, 1] coloured, masks grey."""
    if kind == "image":
        cells = np.moveaxis(cells, 1, -1) / 255.0
        return np.repeat(cells, 3, axis=-1) if cells.shape[-1] == 1 else cells
    if kind == "mask":
        return np.repeat(cells[..., None].astype(float), 3, axis=-1)
    return matplotlib.colormaps[cmap](cells)[..., :3]


def draw_grid(images: np.ndarray, heatmaps: dict[str, np.ndarray], masks: np.ndarray | None,
              scores: dict[str, np.ndarray], blocks: list[tuple[str, int]], cmap: str = CMAP) -> Figure:
    """One figure: images (N, C, H, W) uint8, heatmaps {row label: (N, H, W) in [0, 1]}, masks
    (N, H, W) or None, every heatmap row's anomaly scores {row label: (N,)} (written above its
    cells), and the column blocks as (name, count).

    The cells are tiled into one picture in one axes: far faster to draw than an axes per cell.
    """
    rows = [("input", _rgb(images, "image"))]
    rows += [(label, _rgb(maps, "heatmap", cmap)) for label, maps in heatmaps.items()]
    if masks is not None:
        rows.append(("ground truth", _rgb(masks, "mask")))
    h, w = images.shape[-2:]
    pad, gap, band = max(1, w // 16), w // 3, max(2, h // 6)  # band: room for the scores above a row
    xs, x = [], 0
    for b, (_, count) in enumerate(blocks):
        x += gap if b else 0
        xs += [x + i * (w + pad) for i in range(count)]
        x = xs[-1] + w + pad
    ys, y = [], 0
    for label, _ in rows:
        y += band if label in scores else 0
        ys.append(y)
        y += h + pad
    picture = np.ones((ys[-1] + h, xs[-1] + w, 3), dtype=np.float32)
    for y, (_, cells) in zip(ys, rows):
        for x, cell in zip(xs, cells):
            picture[y:y + h, x:x + w] = cell

    # At the text width whatever the number of columns, so that printed at \textwidth every
    # label keeps its size (6-7 pt); the cells shrink instead.
    left, right, top, bottom = 0.8, 0.55, 0.25, 0.05
    inch = (PAGE_INCHES - left - right) / picture.shape[1]  # inches per picture pixel
    width, height = PAGE_INCHES, top + bottom + picture.shape[0] * inch
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, bottom / height, picture.shape[1] * inch / width, picture.shape[0] * inch / height))
    ax.imshow(picture, interpolation="antialiased")
    ax.set_axis_off()
    for y, (label, _) in zip(ys, rows):
        ax.text(-2 * pad, y + h / 2, label, ha="right", va="center", fontsize=7)
        for x, score in zip(xs, scores.get(label, ())):
            if np.isfinite(score):
                ax.text(x + w / 2, y - 0.15 * pad, f"{score:.3g}", ha="center", va="bottom", fontsize=6)
    start = 0
    for name, count in blocks:
        centre = (xs[start] + xs[start + count - 1] + w) / 2
        ax.text(centre, -0.3 * h, name, ha="center", va="bottom", fontsize=7)
        start += count
    heat_top = top + ys[1] * inch
    heat_bottom = top + (ys[len(heatmaps)] + h) * inch
    colourbar = fig.add_axes(((width - right + 0.1) / width, 1 - heat_bottom / height,
                              0.12 / width, (heat_bottom - heat_top) / height))
    fig.colorbar(ScalarMappable(Normalize(0, 1), matplotlib.colormaps[cmap]), cax=colourbar)
    colourbar.tick_params(labelsize=6)
    return fig


def save_figure(fig: Figure, path: Path, dpi: int = DPI) -> Path:
    """Write a figure atomically, in the format its suffix names."""
    with atomic_write(path, "wb") as handle:
        fig.savefig(handle, format=path.suffix[1:], dpi=dpi)
    return path


@dataclass
class Drawn:
    """One figure of a run: its file stem, kind ("grid", "roc_image", "roc_pixel", "pro" or
    "overview"), the (data set, class, protocol, preset) it shows (class "" for an overview), a
    caption in words, and the figure."""

    stem: str
    kind: str
    key: tuple[str, str, str, str]
    caption: str
    figure: Figure

    @property
    def formats(self) -> tuple[str, ...]:
        return {"grid": (".png", ".pdf")}.get(self.kind, (".png", ".pdf", ".svg"))


def _grid(preds: dict[str, dict[str, np.ndarray]], methods: dict[str, str], caption: str,
          norm: str, eta: float | None, blur: str, samples: int, cmap: str) -> tuple[Figure, str, str, float]:
    """The heatmap grid of one job group (one seed), its predictions aligned; with its caption and
    the reference and η it used."""
    first = next(iter(preds.values()))
    detectors = [label for label, m in methods.items() if not method_plugins.is_reference(m)] or list(preds)
    order = next((label for label, m in methods.items() if m == "fcdd"), detectors[0])
    reference, quantile = display_defaults(str(first["profile"]))
    reference = reference if norm == "auto" else norm
    if len(np.unique(first["label"])) < 2:
        reference = "local"  # a balanced global reference needs both labels; the title says so
    quantile = quantile if eta is None else eta
    labels = first["label"]
    blocks = [(name, pick_columns(preds[order]["score"], labels, value, samples))
              for name, value in (("nominal", 0), ("anomalous", 1))]
    blocks = [(name, index) for name, index in blocks if len(index)]
    columns = np.concatenate([index for _, index in blocks])
    heatmaps = {label: grid_heatmaps(p, columns, reference, quantile, blur) for label, p in preds.items()}
    # The "mean map" column: the mean test image, each method's own mean map over the test set
    # (xadbench.sanity's input-dependence reference, normalised on its own) and how often each
    # pixel is anomalous.
    images = np.concatenate([first["image"][columns], first["image"].mean(0).round().astype(np.uint8)[None]])
    for label, p in preds.items():
        mean = saved_maps(p, blur).mean(0)[None]
        heatmaps[label] = np.concatenate([heatmaps[label], quantile_normalise(mean, quantile, "local")])
    masks = None
    if "mask" in first:
        frequency = first["mask"].mean(0)
        masks = np.concatenate([first["mask"][columns], (frequency / max(frequency.max(), 1e-12))[None]])
    scores = {label: np.append(p["score"][columns], np.nan) for label, p in preds.items()}
    title = (f"{caption}. Columns ordered by {order}'s anomaly score; each method's score above its maps; last "
             f"column: means over the test set (image, each method's mean map, defect frequency). Heatmaps: "
             f"{reference} quantile normalisation, η={quantile:g}, baselines {_blur_words(blur)}")
    fig = draw_grid(images, heatmaps, masks, scores,
                    [(name, len(index)) for name, index in blocks] + [("mean map", 1)], cmap)
    return fig, title, reference, quantile


def _blur_words(blur: str) -> str:
    return "blurred with FCDD's Gaussian kernel, FCDD not blurred" if blur == "gaussian" else "not blurred"


REFERENCE_GREYS = ("#8c8c8c", "#bdbdbd", "#636363")


def draw_overview(rows: pd.DataFrame, references: list[str]) -> Figure:
    """seaborn point plots of results rows (class, column, seed, metric, value), one panel per
    headline metric of the metric registry present: x the classes, hue the columns (method labels, the
    `references` first and in grey), the mean over seeds with ± one std over seeds as error bars.
    One column is not dodged (seaborn divides the dodge by the number of hue levels minus one)."""
    import seaborn as sns

    metrics = [m for m in list_metrics(headline=True) if rows.loc[rows["metric"] == m, "value"].notna().any()]
    classes = list(dict.fromkeys(rows["class"]))
    columns = references + [c for c in dict.fromkeys(rows["column"]) if c not in references]
    colours = iter(matplotlib.colormaps["tab10"].colors)
    palette = {c: REFERENCE_GREYS[i % len(REFERENCE_GREYS)] if c in references else next(colours)
               for i, c in enumerate(columns)}
    # The text width of a two-column paper, panels in rows of at most three: printed at the size drawn.
    rows_of_panels = -(-len(metrics) // 3)
    fig = Figure(figsize=(PAGE_INCHES, 0.4 + 2.3 * rows_of_panels))
    panels = fig.subplots(rows_of_panels, min(3, len(metrics)), sharey=True, squeeze=False).ravel()
    for unused in panels[len(metrics):]:
        unused.set_visible(False)
    axes = panels[:len(metrics)]
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        data = rows[(rows["metric"] == metric) & rows["value"].notna()]
        sns.pointplot(data=data, x="class", y="value", hue="column", order=classes, hue_order=columns,
                      palette=palette, errorbar="sd", dodge=0.5 if len(columns) > 1 else False,
                      linestyle="none", markersize=5,
                      err_kws={"linewidth": 1.2}, legend=i == len(metrics) - 1, ax=ax)
        if get_metric(metric).chance is not None:
            ax.axhline(get_metric(metric).chance, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(get_metric(metric).label.split(" (")[0], fontsize=7)
        ax.set(xlabel="", ylabel="", ylim=(0, 1.02))
        ax.tick_params(labelsize=6.5)
        ax.tick_params(axis="x", labelrotation=45)
    legend = axes[-1].get_legend()
    if legend is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), frameon=False, title=None, fontsize=6.5)
    fig.tight_layout()
    return fig


def overview_figures(results: pd.DataFrame, blur: str) -> Iterator[Drawn]:
    """One `draw_overview` per (data set, protocol, preset) of the results, with the rows of the
    blur policy `blur`."""
    rows = results[results["metric"].isin(list_metrics(headline=True)) & (results["blur"] == blur)]
    reference_methods = [m for m in rows["method"].unique() if method_plugins.is_reference(m)]  # once per method, not per row
    for (dataset, protocol, preset), group in rows.groupby(["dataset", "protocol", "preset"], sort=False):
        name = Path(dataset).name
        references = list(dict.fromkeys(group.loc[group["method"].isin(reference_methods), "column"]))
        seeds = group["seed"].nunique()
        spread = "± one std over seeds" if seeds > 1 else "one seed"
        caption = (f"{name}: {protocol}, preset {preset}, baselines {_blur_words(blur)}; per class the mean over "
                   f"{seeds} seed{'s' if seeds != 1 else ''} ({spread}); reference maps in grey, chance dashed")
        yield Drawn(_slug("overview", name, protocol, preset, f"blur-{blur}"), "overview", (name, "", protocol, preset),
                    caption, draw_overview(group, references))


def render_figures(run: Run | Path, norm: str = "auto", eta: float | None = None, blur: str = "gaussian",
                   samples: int = 6, cmap: str = CMAP, intervals: list[IntervalTable] | None = None,
                   n_resamples: int = RESAMPLES, seed: int = 0) -> Iterator[Drawn]:
    """Every heatmap grid and curve figure of a run, drawn from its results and
    predictions (`reports.report.FigureOptions` documents the options). `intervals`: the run's interval tables
    (default: `run_intervals(run, n_resamples, seed)`), whose values the curves' legends show. Warns once about jobs without predictions; XadError when none of the jobs has
    them."""
    check_options(norm, eta, blur, samples, cmap)
    run = Run.load(run)
    results = run.results
    if intervals is None:
        intervals = run_intervals(run, n_resamples, seed)
    jobs = results.drop_duplicates("job_id")
    missing, found = [], 0
    for (dataset, class_name, protocol, preset), class_jobs in jobs.groupby(
            ["dataset", "class", "protocol", "preset"], sort=False):
        name = Path(dataset).name
        key = (name, class_name, protocol, preset)
        by_label: dict[str, list[dict[str, np.ndarray]]] = {}
        seeds = 0
        for seed_value, seed_jobs in class_jobs.groupby("seed", sort=False):
            preds, methods = {}, {}
            for label, method, job_id in zip(seed_jobs["column"], seed_jobs["method"], seed_jobs["job_id"]):
                if not run.has_predictions(job_id):
                    missing.append(run.prediction_path(job_id).name)
                    continue
                preds[label], methods[label] = run.predictions(job_id), method
            if not preds:
                continue
            found, seeds = found + len(preds), seeds + 1
            caption = f"{name} / {class_name}: {protocol}, preset {preset}, seed {seed_value}"
            preds = _aligned(preds, caption)
            fig, title, reference, quantile = _grid(preds, methods, caption, norm, eta, blur, samples, cmap)
            stem = _slug("grid", name, class_name, protocol, preset, f"seed{seed_value}",
                         f"{reference}-eta{quantile:g}", f"blur-{blur}", cmap)
            yield Drawn(stem, "grid", key, title, fig)
            for label, p in preds.items():
                by_label.setdefault(label, []).append(p)
        for level, metric, kind in (("image", "image_auc", "roc_image"), ("pixel", "pixel_auc", "roc_pixel"),
                                    ("pro", "aupro", "pro")):
            legends = curve_legends(intervals, dataset, protocol, preset, blur, class_name, metric)
            bands = curve_bands(by_label, class_name, blur, level, n_resamples, seed, legends)
            if not bands:
                continue
            what = {"image": "image-level ROC", "pixel": "pixel-level ROC (pooled)",
                    "pro": f"PRO curve up to FPR {MAX_FPR:g}"}[level]
            title = (f"{name} / {class_name}: {what}\n{protocol}, preset {preset}, {seeds} seed{'s' if seeds != 1 else ''}"
                     f"{chr(10) + 'baselines ' + _blur_words(blur) if level != 'image' else ''}")
            note = (f"shaded: {CONFIDENCE:.0%} percentile band of {n_resamples} stratified bootstrap resamples of the "
                    f"test images; legend: {get_metric(metric).label} as in the tables with its interval"
                    + ("" if legends else " (none stored for this blur policy: the method names only)")
                    + ("; maps at the model's resolution" if level != "image" else ""))
            stem = _slug(kind, name, class_name, protocol, preset, *([f"blur-{blur}"] if level != "image" else []))
            yield Drawn(stem, kind, key, f"{title.replace(chr(10), ', ')} ({note})", draw_curves(bands, level))
    if not found:
        raise XadError(f"{run.path / 'predictions'} holds none of the predictions of results.csv's jobs; figures are "
                       "drawn from the .npz files `xadbench run` saves there (rerun the jobs to recreate them)")
    if missing:
        warnings.warn(f"{len(missing)} job(s) of results.csv have no predictions in {run.path / 'predictions'} "
                      f"and are left out of the figures (e.g. {missing[0]})", stacklevel=2)
    yield from overview_figures(results, blur)


def results_blur(results, job_id: str) -> str:
    """A blur policy the job's rows were scored with (image AUC does not depend on it)."""
    return str(results.loc[results["job_id"] == job_id, "blur"].iloc[0])


def save_drawn(run_dir: Path, drawn: Iterable[Drawn]) -> list[Path]:
    """Write figures from `render_figures` into RUN_DIR/figures/, each in its formats, and beside
    each a LaTeX snippet (`figure_latex`) with its caption, which the image never carries."""
    out = Path(run_dir) / "figures"
    paths = []
    for d in drawn:
        paths += [save_figure(d.figure, out / f"{d.stem}{suffix}") for suffix in d.formats]
        with atomic_write(out / f"{d.stem}.tex") as handle:
            handle.write(figure_latex(d))
        paths.append(out / f"{d.stem}.tex")
    return paths


def figure_latex(drawn: Drawn) -> str:
    """A figure float of the saved PDF with the caption in words: `figure*` (the text width) for
    the wide grid and overview, `figure` (a column) for the curves. Needs graphicx."""
    environment = "figure*" if drawn.kind in ("grid", "overview") else "figure"
    caption = tex_escape(drawn.caption)
    for symbol, math in (("η", "$\\eta$"), ("±", "$\\pm$"), ("σ", "$\\sigma$"), ("−", "$-$")):
        caption = caption.replace(symbol, math)
    width = "\\textwidth" if environment == "figure*" else "\\columnwidth"
    return (f"% Written by xadbench. Needs \\usepackage{{graphicx}}.\n\\begin{{{environment}}}[htbp]\n\\centering\n"
            f"\\includegraphics[width={width}]{{{drawn.stem}.pdf}}\n\\caption{{{caption}}}\n"
            f"\\label{{fig:xadbench-{re.sub(r'[^A-Za-z0-9]+', '-', drawn.stem)}}}\n\\end{{{environment}}}\n")
