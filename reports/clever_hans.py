"""Table and figure of the Clever Hans study (paper section 4.3, Figure 8; the grid of jobs:
`xadbench.studies.clever_hans`), read from its run folder.

tables/clever_hans.{csv,tex}: mean ± std over seeds of every metric, one row per method ×
condition. figures/clever_hans.{png,pdf}, like Figure 8: columns are watermarked anomalous test
images (paper form: the most anomalous horses) ordered by the anomaly score of the first method's
watermark-trained model of the first seed (FCDD when it ran), evenly spread over that order from
the most nominal to the most anomalous; rows are the input and each method's heatmap of the
watermark-trained and of the control model, after the post-processor its predictions record.
Heatmaps are quantile-normalised as the paper's Figure 8 (appendix C: η = 0.99, reference = the
label-balanced test set of that model, "global"), so a colour means the same across one model's
row; the watermark box is outlined.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from xadbench import heatmaps, run_folder
from xadbench.defaults import CMAP
from xadbench.errors import XadError
from xadbench.files import atomic_write
from xadbench.registry import methods
from xadbench.reports.figures import save_figure
from xadbench.reports.table_formats import tex_escape
from xadbench.studies.clever_hans import BLUR, CONTROL, PAPER, REFERENCE, WATERMARK

CONDITION_LABELS = {
    WATERMARK: "trained with watermarks",
    CONTROL: "control (no watermarks)",
    REFERENCE: "nominal only",
    PAPER: "VOC horses (paper)",
}
METRIC_LABELS = {
    "auc_watermarked": "AUC watermarked",
    "auc_clean": "AUC clean",
    "auc_all": "AUC all",
    "mass_watermarked": "mass in box, watermarked",
    "mass_clean": "mass in box, clean",
    "mass_anomalous": "mass in box, anomalous",
    "mass_nominal": "mass in box, nominal",
}
#: What the figure reads from each job's predictions file.
FIGURE_KEYS = ("score", "anomaly_map", "postprocessor", "label", "key", "image", "watermarked", "box")
ETA = 0.99
FIGURE_COLUMNS = 8
CELL_INCHES = 1.1
DPI = 150


# ---- table ----------------------------------------------------------------------------------
def _display(method: str) -> str:
    return methods.display_name(method)


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """One row per method × condition (in the order they first appear): for every metric its
    mean and sample std (ddof=1; empty for one seed) over seeds, and the seed count."""
    if results.empty:
        raise XadError("the Clever Hans study has no finished jobs yet; run it first")
    metrics = [m for m in METRIC_LABELS if m in set(results["metric"])]
    rows = []
    method_order = {m: i for i, m in enumerate(dict.fromkeys(results["method"]))}
    condition_order = {c: i for i, c in enumerate((WATERMARK, PAPER, CONTROL, REFERENCE))}
    results = results.assign(_m=results["method"].map(method_order),
                             _c=results["condition"].map(condition_order).fillna(len(condition_order)))
    results = results.sort_values(["_m", "_c"], kind="stable")
    for (method, condition), group in results.groupby(["method", "condition"], sort=False):
        row: dict[str, Any] = {"method": method, "condition": condition, "seeds": group["seed"].nunique()}
        for metric in metrics:
            values = group.loc[group["metric"] == metric, "value"].astype(float)
            row[metric] = values.mean() if len(values) else np.nan
            row[f"{metric} std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        row["box_share"] = float(group["box_share"].astype(float).iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(mean: float, std: float, digits: int = 3) -> str:
    if pd.isna(mean):
        return "--"
    text = f"{mean:.{digits}f}"
    return text + (f" $\\pm$ {std:.{digits}f}" if pd.notna(std) else "")


def to_latex(summary: pd.DataFrame) -> str:
    """A booktabs table of `summarise`'s output: mean ± std per metric."""
    metrics = [m for m in METRIC_LABELS if m in summary.columns]
    header = ["Method", "Training", *(METRIC_LABELS[m] for m in metrics)]
    box = summary["box_share"].iloc[0]
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{ll" + "r" * len(metrics) + "}", r"\toprule",
        " & ".join(tex_escape(h) for h in header) + r" \\", r"\midrule",
    ]
    for _, row in summary.iterrows():
        cells = [_display(row["method"]), CONDITION_LABELS.get(row["condition"], row["condition"]),
                 *(_cell(row[m], row[f"{m} std"]) for m in metrics)]
        lines.append(" & ".join(tex_escape(c) if i < 2 else c for i, c in enumerate(cells)) + r" \\")
    seeds = ", ".join(sorted({str(int(s)) for s in summary["seeds"]}))
    lines += [
        r"\bottomrule", r"\end{tabular}",
        r"\caption{Clever Hans study: detection AUC of watermarked and clean anomalies (each against all "
        r"nominal test images) and the share of heatmap mass in the watermark box (maps after the shared "
        rf"blur, min-shifted per image; box area = {box:.3f} of the image). Mean $\pm$ std over seeds "
        rf"(seeds per row: {seeds}).}}",
        r"\label{tab:clever-hans}", r"\end{table}", "",
    ]
    return "\n".join(lines)


def write_table(results: pd.DataFrame, out: Path) -> list[Path]:
    """tables/clever_hans.csv (means and stds at full precision) and tables/clever_hans.tex."""
    summary = summarise(results)
    csv_path, tex_path = Path(out) / "tables" / "clever_hans.csv", Path(out) / "tables" / "clever_hans.tex"
    with atomic_write(csv_path) as handle:
        summary.to_csv(handle, index=False)
    with atomic_write(tex_path) as handle:
        handle.write(to_latex(summary))
    return [csv_path, tex_path]


# ---- figure ---------------------------------------------------------------------------------
def figure_columns(scores: np.ndarray, candidates: np.ndarray, n: int, top: bool) -> np.ndarray:
    """Indices (into the test set) of up to n of `candidates`, ascending by score: evenly spread
    over the score order, or the n highest-scoring ones when `top`."""
    order = candidates[np.argsort(scores[candidates], kind="stable")]
    if len(order) <= n:
        return order
    if top:
        return order[-n:]
    return order[np.round(np.linspace(0, len(order) - 1, n)).astype(int)]


def _figure_rows(results: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(row label, job id, condition) per heatmap row, first seed only, in method order."""
    first_seed = sorted(results["seed"].astype(int).unique())[0]
    jobs = results[results["seed"].astype(int) == first_seed].drop_duplicates("job_id")
    order = {WATERMARK: 0, PAPER: 0, CONTROL: 1, REFERENCE: 2}
    rows = []
    for method in dict.fromkeys(jobs["method"]):
        mine = jobs[jobs["method"] == method].sort_values("condition", key=lambda c: c.map(order))
        for _, job in mine.iterrows():
            label = f"{_display(method)}\n{CONDITION_LABELS.get(job['condition'], job['condition'])}"
            rows.append((label, str(job["job_id"]), str(job["condition"])))
    return rows


def draw_figure(out: Path, results: pd.DataFrame, columns: int = FIGURE_COLUMNS) -> Figure:
    """The Figure-8-like grid of a study's finished jobs (see the module docstring)."""
    rows = _figure_rows(results)
    if not rows:
        raise XadError("the Clever Hans study has no finished jobs to draw; run it first")
    preds = {}
    for _, job_id, _ in rows:
        path = Path(out) / "predictions" / f"{job_id}.npz"
        if not path.is_file():
            raise XadError(f"{path} is missing; rerun the study to run its job again")
        preds[job_id] = run_folder.load_predictions(path, FIGURE_KEYS)
    shortcut = [(label, j) for label, j, c in rows if c in (WATERMARK, PAPER)] or [(rows[0][0], rows[0][1])]
    order_label, order_job = next((r for r in shortcut if r[0].startswith(_display("fcdd") + "\n")), shortcut[0])
    ref = preds[order_job]
    paper = bool(ref["watermarked"].sum() == 0)
    candidates = np.flatnonzero(ref["label"] == 1) if paper else np.flatnonzero(ref["watermarked"])
    picked = figure_columns(ref["score"], candidates, columns, top=paper)
    images = ref["image"][picked]
    top, left, box_h, box_w = (int(v) for v in ref["box"])

    heat_rows = []
    for label, job_id, _ in rows:
        p = preds[job_id]
        if not np.array_equal(p["key"], ref["key"]):
            raise XadError(f"job {job_id} scored another test set than job {order_job}; rerun the study into a fresh --out")
        maps = heatmaps.quantile_normalise(heatmaps.saved_maps(p, BLUR, where=job_id), ETA, "global",
                                           labels=p["label"], seed=0)
        heat_rows.append((label, maps[picked]))

    n_rows, n_cols = 1 + len(heat_rows), len(picked)
    left_in, top_in = 1.9, 0.5
    fig = Figure(figsize=(max(left_in + 0.5 + CELL_INCHES * n_cols, 6.5), top_in + 0.15 + CELL_INCHES * n_rows))
    width, height = fig.get_size_inches()
    grid = fig.add_gridspec(n_rows, n_cols + 1, width_ratios=[1.0] * n_cols + [0.1], wspace=0.04, hspace=0.04,
                            left=left_in / width, right=1 - 0.35 / width, top=1 - top_in / height,
                            bottom=0.15 / height)
    cmap = matplotlib.colormaps[CMAP]
    for c, index in enumerate(picked):
        for r in range(n_rows):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                image = images[c]
                if image.shape[0] == 1:
                    ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(np.moveaxis(image, 0, -1))
                ax.set_title(f"{ref['score'][index]:.3g}", fontsize=7, pad=2)
            else:
                ax.imshow(heat_rows[r - 1][1][c], cmap=cmap, vmin=0, vmax=1)
                ax.add_patch(Rectangle((left - 0.5, top - 0.5), box_w, box_h, fill=False, edgecolor="white",
                                       linewidth=0.6, linestyle="--"))
            if c == 0:
                label = "input" if r == 0 else heat_rows[r - 1][0]
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    colourbar = fig.add_subplot(grid[1:, -1])
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=colourbar)
    colourbar.tick_params(labelsize=7)
    what = "most anomalous horses" if paper else "watermarked anomalous test images"
    order_name = order_label.replace("\n", ", ")
    fig.suptitle(f"Clever Hans: {what}, ordered by the score of {order_name} (above each input)\n"
                 f"heatmaps: η={ETA}, label-balanced global reference per model; dashed: watermark box",
                 fontsize=7, y=1 - 0.04 / height, va="top")
    return fig


def write_figure(results: pd.DataFrame, out: Path, columns: int = FIGURE_COLUMNS) -> list[Path]:
    """figures/clever_hans.png and .pdf."""
    fig = draw_figure(out, results, columns)
    return [save_figure(fig, Path(out) / "figures" / f"clever_hans.{suffix}", dpi=DPI) for suffix in ("png", "pdf")]
