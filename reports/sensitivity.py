"""Tables and figures of the paper's sensitivity studies (appendix A: receptive field, Tables
3 and 4, Figures 9 and 10; appendix B: σ, Table 5, Figure 11), from a study's run folder.

Each table lists the mean AUC per setting over seeds and classes, with the per-class means
beside it; `compare="paper"` adds the published value of the setting (`paper_studies.csv`, a
mean over all classes of the data set). Each figure plots the AUC against the setting, the
paper's curve dashed beside ours, over heatmaps of a few anomalous test images per setting,
normalised as appendix C does for the data set (the profile's display defaults).
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xadbench import heatmaps, run_folder
from xadbench.defaults import CMAP
from xadbench.errors import XadError
from xadbench.files import atomic_write
from xadbench.profiles import get_profile
from xadbench.reports.figures import save_figure

PAPER_STUDIES = Path(__file__).with_name("paper_studies.csv")
COMPARE = ("none", "paper")
DPI = 130
CELL_INCHES = 1.05
MIN_WIDTH_INCHES = 7.0


def read_paper_studies() -> pd.DataFrame:
    return pd.read_csv(PAPER_STUDIES, comment="#")


def summarise(rows: pd.DataFrame, setting: str, metric: str, compare: str, paper_key: tuple[str, str],
              paper_setting: str | None = None) -> pd.DataFrame:
    """Mean `metric` per value of `setting` over seeds then classes, the per-class means as
    columns, and with compare="paper" the paper's value of `paper_key` (study, dataset) matched on
    `paper_setting` (default: `setting`)."""
    if compare not in COMPARE:
        raise XadError(f"--compare {compare!r} is unknown; use none or paper")
    per_class = rows.groupby([setting, "class"], sort=False, dropna=False)[metric].mean().unstack("class")
    table = pd.DataFrame({metric: per_class.mean(axis=1), "seeds": rows.groupby(setting, sort=False, dropna=False)["seed"].nunique()})
    table = table.join(per_class.add_prefix(f"{metric} "))
    table.index.name = setting
    if compare == "paper":
        paper = read_paper_studies()
        paper = paper[(paper["study"] == paper_key[0]) & (paper["dataset"] == paper_key[1]) & (paper["metric"] == metric)]
        key = paper_setting or setting
        published = dict(zip(paper["setting"].astype(float), paper["value"]))
        settings = rows.drop_duplicates(setting).set_index(setting, drop=False)[key]
        table[f"paper {metric} (mean of all classes)"] = [published.get(float(v), np.nan) if pd.notna(v) else np.nan
                                                        for v in settings.reindex(table.index)]
    return table.reset_index()


def write_table(table: pd.DataFrame, out: Path, name: str) -> Path:
    path = Path(out) / "tables" / f"{name}.csv"
    with atomic_write(path) as handle:
        table.to_csv(handle, index=False, float_format="%.4f")
    return path


def _curve(ax, x, ours, paper, xlabel: str, metric: str) -> None:
    ax.plot(x, ours, "o-", color="tab:blue", label="xadbench (mean)")
    if paper is not None and np.isfinite(paper).any():
        ax.plot(x, paper, "s--", color="tab:grey", label="paper (mean of all classes)")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(metric.replace("_", " "), fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def _grid_figure(columns: list[str], images: np.ndarray, cells: list[np.ndarray], title: str,
                 curve: tuple) -> Figure:
    """A curve on top and below it one row per sample: the input, then its map per column."""
    rows, n_cols = len(images), len(columns) + 1
    fig = Figure(figsize=(max(CELL_INCHES * n_cols + 0.4, MIN_WIDTH_INCHES), CELL_INCHES * rows + 3.0))
    outer = fig.add_gridspec(2, 1, height_ratios=[2.2, rows], hspace=0.3, left=0.06, right=0.98, top=0.92, bottom=0.02)
    top = outer[0].subgridspec(1, 5)
    _curve(fig.add_subplot(top[0, 1:4]), *curve)
    grid = outer[1].subgridspec(rows, n_cols, hspace=0.08, wspace=0.04)
    cmap = matplotlib.colormaps[CMAP]
    for r in range(rows):
        for c in range(n_cols):
            ax = fig.add_subplot(grid[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                image = np.moveaxis(images[r], 0, -1)
                ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
            else:
                ax.imshow(cells[c - 1][r], cmap=cmap, vmin=0, vmax=1)
            if r == 0:
                ax.set_title("input" if c == 0 else columns[c - 1], fontsize=7)
    fig.suptitle(textwrap.fill(title, 110), fontsize=8)
    return fig


def write_figure(fig: Figure, out: Path, name: str) -> list[Path]:
    return [save_figure(fig, Path(out) / "figures" / f"{name}.{suffix}", dpi=DPI) for suffix in ("png", "pdf")]


def _normalise(maps: np.ndarray, profile: str) -> np.ndarray:
    """Each map against itself ("local") with the profile's η (appendix C)."""
    _, eta = get_profile(profile).display
    return heatmaps.quantile_normalise(maps.astype(np.float32), eta, "local")


# -- the σ study ---------------------------------------------------------------------------------

def sigma_table(rows: pd.DataFrame, compare: str) -> pd.DataFrame:
    """Pixel AUC per σ (paper scale, with σ in pixels at the study's image size)."""
    table = summarise(rows, "sigma_paper", "pixel_auc", compare, ("sigma", "MVTec-AD"))
    px = rows.drop_duplicates("sigma_paper").set_index("sigma_paper")["sigma_px"]
    table.insert(1, "sigma_px", table["sigma_paper"].map(px))
    return table


def sigma_figure(table: pd.DataFrame, out: Path, profile: str, title: str) -> Figure:
    saved = np.load(Path(out) / "sigma_maps.npz", allow_pickle=False)
    sigmas = list(table["sigma_paper"])
    cells = [_normalise(saved[f"sigma={s:g}"], profile) for s in sigmas]
    paper = table.get("paper pixel_auc (mean of all classes)")
    curve = (sigmas, table["pixel_auc"], None if paper is None else paper.to_numpy(dtype=float),
             "σ (pixels at 224 px; scaled to the image size)", "pixel_auc")
    columns = [f"σ={s:g} ({px:.2g} px)" for s, px in zip(sigmas, table["sigma_px"])]
    return _grid_figure(columns, saved["image"], cells, title, curve)


# -- the receptive-field study -------------------------------------------------------------------

def receptive_field_table(rows: pd.DataFrame, metric: str, compare: str, dataset: str) -> pd.DataFrame:
    """`metric` per net (kernel, receptive field); the reference net (no kernel) first."""
    rows = rows.assign(net=[f"k={int(k)}" if pd.notna(k) else "appendix D net" for k in rows["kernel"]])
    table = summarise(rows, "net", metric, compare, ("receptive-field", dataset), paper_setting="receptive_field")
    info = rows.drop_duplicates("net").set_index("net")
    table.insert(1, "receptive_field", table["net"].map(info["receptive_field"]))
    table.insert(2, "field_share_of_side", (table["receptive_field"] / table["net"].map(info["image_size"])).round(3))
    return table


def receptive_field_figure(table: pd.DataFrame, rows: pd.DataFrame, out: Path, metric: str, profile: str,
                           title: str, samples: int = 4) -> Figure:
    nets = [n for n in table["net"] if n.startswith("k=")]
    kernels = [int(n[2:]) for n in nets]
    first = rows[rows["kernel"].notna()].iloc[0]
    cells, images = [], None
    for kernel in kernels:
        job = rows[(rows["kernel"] == kernel) & (rows["class"] == first["class"]) & (rows["seed"] == first["seed"])].iloc[0]
        saved = run_folder.load_predictions(Path(out) / "predictions" / f"{job['job_id']}.npz")
        chosen = np.flatnonzero(saved["label"] == 1)[:samples]
        images = saved["image"][chosen] if images is None else images
        cells.append(_normalise(saved["anomaly_map"][chosen], profile))
    mine = table.set_index("net").loc[nets]
    paper_column = f"paper {metric} (mean of all classes)"
    curve = (list(mine["receptive_field"]), mine[metric],
             mine[paper_column].to_numpy(dtype=float) if paper_column in mine else None,
             "receptive field (pixels)", metric)
    columns = [f"k={k}, RF {rf}" for k, rf in zip(kernels, mine["receptive_field"])]
    return _grid_figure(columns, images, cells, title, curve)
