"""Result tables of a run: its results rows (`run_folder.read_results`) and, where its saved
predictions give one, the bootstrap of `reports.intervals`.

One table per (data set, protocol, preset, blur policy, metric) found in the results or the
bootstrap (AUPRO and the per-defect-type rows come from the bootstrap only): rows are the classes,
then "Mean" (over classes) and "σ" (standard deviation over classes), as in the paper's Table 2;
columns are the methods of the run. A defect-type table has a row per "<class>/<type>" and no
Mean or σ. A cell shows the mean over seeds, its bootstrap interval as "value [low, high]" or
"value ± half-width" (`CI_STYLES`, the `--ci` switch) and, with several seeds, the sample std over
seeds (ddof=1) in parentheses: "0.912 [0.890, 0.931] (0.013)". Where the bootstrap covers a
metric its values replace the results' (they are computed from the predictions at the model's
resolution, and the interval belongs to them; results.csv keeps the pixel metrics at the masks'
resolution). The Mean and σ rows are over the classes' values and are empty for a column that
lacks a class, so every Mean compares the same classes.

Significance, not the highest number: a method is bold only when its paired bootstrap difference
to every other method of the row excludes 0; otherwise the best and the methods not
significantly below it are underlined (`reports.intervals.IntervalTable.marks`). Without a
bootstrap (no saved predictions, `--ci off`, or a metric it does not cover) nothing is marked. σ
describes the spread over classes and is never marked. Captions say in words what the table shows:
the data set, protocol, preset with its image size, blur policy, seeds and the bootstrap.

`compare="paper"` adds the published numbers of the FCDD paper (`paper_results.csv`) as extra
columns "<paper method> (paper)" wherever our data set, class, method, protocol and metric have a
published counterpart: MVTec-AD pixel-wise AUC (Table 2) against our `pixel_auc`, and detection
AUC for Fashion-MNIST, CIFAR-10 and ImageNet-30 (Tables 6, 7, 8) against our `image_auc`. Their
Mean and σ rows are over the same classes as ours (the paper's all-class means are in the data
file), and they are never marked.

Reference maps (`xadbench.sanity.REFERENCE_METHODS`: centre, pixelstats) are the first columns,
under their own rule, and are never marked. A cell whose metric has a mean-map counterpart
(`pixel_auc` and `pixel_auc_mean_map`, ...) is flagged † where the class's value is not clearly
above (by `sanity.MEAN_MAP_MARGIN`) the method's own mean map's (both from results.csv): the CSV
lists those columns per class in a "not above own mean map" column, the LaTeX marks the cells and
says so under the table.

Each table is written as CSV (class rows and Mean at full precision: "<method>" holds the value,
"<method> std" the std over seeds, "<method> low"/"high"/"mark" the bootstrap) and as LaTeX to
RUN_DIR/tables/: pandas' `Styler.to_latex` with booktabs rules and siunitx `S` columns, so the
numbers align on the decimal point and the tables compile with the LaTeX packages booktabs and
siunitx (v3). `summary_table` is the terminal view.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from rich.table import Table as RichTable

from xadbench.errors import XadError
from xadbench.run_folder import read_results, results_store
from xadbench.sanity import MEAN_MAP_MARGIN, MEAN_MAP_SUFFIX, REFERENCE_METHODS, not_above_mean_map
from xadbench.store import atomic_write

if TYPE_CHECKING:
    from xadbench.reports.intervals import IntervalTable

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
COMPARE_CHOICES = ("paper",)
TABLE_KEYS = ("dataset", "protocol", "preset", "blur", "metric")
#: The part of TABLE_KEYS one bootstrap covers (all its metrics resample the same test images).
GROUP_KEYS = TABLE_KEYS[:-1]
#: How a cell shows its bootstrap interval: "value [low, high]" or "value ± half-width".
CI_STYLES = ("interval", "halfwidth")
#: Marks of a row's methods (`reports.intervals.IntervalTable.marks`).
BEST, TIED = "best", "tied"
DISPLAY_NAMES = {"fcdd": "FCDD", "grad": "Grad", "ae": "AE", "grad-cam": "Grad-CAM", "grad-ig": "Grad-IG",
                 "grad-smooth": "Grad-Smooth", "patchcore": "PatchCore", "padim": "PaDiM"}
METRIC_NAMES = {
    "image_auc": "Detection AUC",
    "pixel_auc": "Pixel-wise AUC (pooled)",
    "per_image_pixel_auc": "Per-image pixel AUC",
    "aupro": "AUPRO (per-region overlap up to FPR 0.3, normalised)",
    "pixel_auc_mean_map": "Pixel-wise AUC (pooled) of the method's own mean map",
    "per_image_pixel_auc_mean_map": "Per-image pixel AUC of the method's own mean map",
    "randomised_spearman_top": "Spearman correlation with the map after re-initialising the top layer",
    "randomised_ssim_top": "SSIM with the map after re-initialising the top layer",
    "randomised_spearman_all": "Spearman correlation with the map after re-initialising all layers",
    "randomised_ssim_all": "SSIM with the map after re-initialising all layers",
    "pixel_auc_randomised": "Pixel-wise AUC (pooled) after re-initialising all layers",
    "deletion_area": "Normalised deletion area (lower: more faithful)",
    "deletion_area_random": "Normalised deletion area, random pixel order",
    "insertion_area": "Normalised insertion area (higher: more faithful)",
    "faithfulness_gain": "Faithfulness gain (random minus map deletion area)",
}
FLAG = "†"
FLAG_COLUMN = "not above own mean map"
MEAN, SIGMA = "Mean", "σ"
DIGITS = 3
DATASET_NAMES = {"mvtec": "MVTec-AD", "synthetic": "the built-in synthetic data (MVTec-AD layout)",
                 "cifar10": "CIFAR-10", "fmnist": "Fashion-MNIST", "imagenet30": "ImageNet-30",
                 "voc": "Pascal VOC", "cifar100": "CIFAR-100", "emnist": "EMNIST letters"}
PROTOCOL_WORDS = {
    "unsupervised": "unsupervised (no real defects in training)",
    "semi-supervised": "semi-supervised (a few real defects per type in training)",
    "synthetic-gt": "synthetic ground truth (confetti anomalies with their own masks)",
}
BLUR_WORDS = {"gaussian": "baselines' maps blurred with FCDD's Gaussian kernel (FCDD's not blurred)",
              "none": "maps not blurred"}
PAPER_DIGITS = 2
#: Settings that tell two runs of one method apart ("weights": the weights actually used, so a
#: fallback to random init is not pooled with pretrained runs). Left out of `params`: the device
#: (like the job id, a result does not depend on where it was computed) and the seed (its own
#: column; a method's seeds are one column, averaged).
VARIANT_FIELDS = ("oe", "oe_limit", "oe_exclude", "k", "weights", "params")
IGNORED_PARAMS = ("device", "seed")
# Our data set names (normalised, see `_norm`) → the paper's.
PAPER_DATASETS = {
    "mvtec": "MVTec-AD", "mvtecad": "MVTec-AD",
    "cifar10": "CIFAR-10",
    "fmnist": "Fashion-MNIST", "fashionmnist": "Fashion-MNIST",
    "imagenet": "ImageNet-30", "imagenet30": "ImageNet-30",
}
# Class names (normalised) that common loaders spell differently from the paper.
CLASS_ALIASES = {"tshirt": "tshirttop", "dialtelephone": "rotarydialtelephone"}


@dataclass
class ResultTable:
    """One class × method table. `mean`/`std` hold our columns, `paper` the published ones; all
    three share the index: the classes, then MEAN and SIGMA."""

    key: dict[str, str]
    mean: pd.DataFrame
    std: pd.DataFrame
    seeds: list[int]  # every seed of the table's jobs
    paper: pd.DataFrame
    paper_tables: list[str]
    references: list[str] = field(default_factory=list)  # reference columns, first in `mean`
    flags: dict[str, list[str]] = field(default_factory=dict)  # class -> columns not above their mean map
    image_size: int | None = None
    setup_notes: list[str] = field(default_factory=list)  # set where the paper's columns stand beside ours
    # The bootstrap (`reports.intervals`), where the run's predictions give one for the metric:
    # interval bounds like `mean` (NaN where none) and the marks per row {column: BEST | TIED}.
    low: pd.DataFrame | None = None
    high: pd.DataFrame | None = None
    marks: dict[str, dict[str, str]] = field(default_factory=dict)
    n_resamples: int | None = None
    confidence: float | None = None
    style: str = "interval"  # CI_STYLES: how a cell shows its interval
    by_defect: bool = False  # rows are "<class>/<defect type>" (no Mean and σ)
    seeds_per_column: dict[str, int] = field(default_factory=dict)  # where methods ran different seeds

    @property
    def slug(self) -> str:
        """File name stem: the key parts, safe on every file system."""
        parts = [Path(self.key["dataset"]).name] + [self.key[k] for k in TABLE_KEYS[1:]]
        parts += ["defects"] if self.by_defect else []
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts))

    def mark(self, row: str, column: str) -> str:
        """BEST, TIED or "" (see `reports.intervals.IntervalTable.marks`)."""
        return self.marks.get(row, {}).get(column, "")

    def interval(self, row: str, column: str) -> tuple[float, float] | None:
        if self.low is None or pd.isna(self.low.at[row, column]):
            return None
        return float(self.low.at[row, column]), float(self.high.at[row, column])


def load_results(run_dir: Path) -> pd.DataFrame:
    """The results rows of RUN_DIR (run_folder.read_results); XadError when the folder or its rows
    are missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise XadError(f"run folder {run_dir} does not exist; pass the folder `xadbench run` wrote (its --out)")
    store = results_store(run_dir)
    if not store.exists() and not store.csv_path.is_file():
        raise XadError(f"{run_dir} holds no results ({store.path.name}); run `xadbench run --out {run_dir}` first, "
                       "or pass another run folder")
    results = read_results(run_dir)
    if results.empty:
        raise XadError(f"{store.path} has no results yet; let `xadbench run --out {run_dir}` finish a job first")
    for column in ("job_id", "class", "method", *TABLE_KEYS, *VARIANT_FIELDS):
        results[column] = results[column].astype(str)
    results["value"] = pd.to_numeric(results["value"], errors="coerce")
    results["column"] = method_labels(results)
    return results


def _settings(row: pd.Series) -> dict[str, str]:
    settings = {f: str(row[f]) for f in VARIANT_FIELDS if f != "params"}
    try:
        params = json.loads(row["params"])
    except (json.JSONDecodeError, TypeError):
        params = {"params": row["params"]}
    if isinstance(params, dict):
        settings.update({k: json.dumps(v, default=str) for k, v in params.items() if k not in IGNORED_PARAMS})
    return settings


def method_labels(results: pd.DataFrame) -> pd.Series:
    """A column label per row: the method's display name ("FCDD" for fcdd), followed by the
    settings that differ when one method ran with several settings on one data set, protocol and
    preset, e.g. "FCDD (oe_limit=8)"; otherwise their results would be pooled as one method."""
    labels = results["method"].map(lambda m: DISPLAY_NAMES.get(m, m))
    rows = list(results[list(VARIANT_FIELDS)].astype(str).itertuples(index=False, name=None))
    settings_of: dict[str, dict[str, str]] = {}  # variant key -> its settings
    key_of: dict[tuple[str, ...], str] = {}  # one per distinct row of VARIANT_FIELDS
    for fields in dict.fromkeys(rows):
        setting = _settings(pd.Series(fields, index=VARIANT_FIELDS))
        key_of[fields] = json.dumps(setting, sort_keys=True)
        settings_of.setdefault(key_of[fields], setting)
    variant = pd.Series([key_of[fields] for fields in rows], index=results.index)
    for _, group in results.groupby(["dataset", "protocol", "preset", "method"], sort=False):
        keys = variant[group.index]
        if keys.nunique() < 2:
            continue
        settings = {key: settings_of[key] for key in keys.unique()}
        names = list(dict.fromkeys(name for s in settings.values() for name in s))
        differing = [n for n in names if len({s.get(n) for s in settings.values()}) > 1]
        for key, setting in settings.items():
            suffix = ", ".join(f"{n}={setting.get(n, '')}" for n in differing)
            index = keys.index[keys == key]
            labels[index] = labels[index] + f" ({suffix})"
    return labels


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def paper_method(method: str, paper_dataset: str, protocol: str) -> str | None:
    """The paper's column for one of our methods: fcdd ↔ FCDD (unsupervised) or FCDD
    (semi-supervised); ae ↔ AE-L2 on MVTec-AD, AE elsewhere. None when there is none."""
    if method == "fcdd":
        return {"unsupervised": "FCDD", "semi-supervised": "FCDD (semi-supervised)"}.get(protocol)
    if method == "ae":
        return "AE-L2" if paper_dataset == "MVTec-AD" else "AE"
    return None


def read_paper_results() -> pd.DataFrame:
    """The published per-class numbers (Tables 2, 6, 7, 8), with a normalised class key."""
    paper = pd.read_csv(PAPER_RESULTS, comment="#", dtype={"class": str})
    paper = paper[(paper["table"] != "Table 1") & ~paper["class"].isin([MEAN, SIGMA])].copy()
    paper["class_key"] = paper["class"].map(_norm)
    return paper


def _paper_columns(group: pd.DataFrame, classes: list[str], paper: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    key = group.iloc[0]
    dataset = PAPER_DATASETS.get(_norm(Path(key["dataset"]).name))
    columns, tables = {}, []
    if dataset is None:
        return pd.DataFrame(index=classes), tables
    for method in group["method"].unique():
        name = paper_method(method, dataset, key["protocol"])
        rows = paper[(paper["dataset"] == dataset) & (paper["method"] == name) & (paper["metric"] == key["metric"])]
        label = f"{name} (paper)"
        if rows.empty or label in columns:
            continue
        published = dict(zip(rows["class_key"], rows["value"]))
        columns[label] = [published.get(CLASS_ALIASES.get(_norm(c), _norm(c)), np.nan) for c in classes]
        tables += [t for t in rows["table"].unique() if t not in tables]
    return pd.DataFrame(columns, index=classes, dtype=float), tables


def _with_summary_rows(frame: pd.DataFrame) -> pd.DataFrame:
    complete = frame.notna().all()
    mean = frame.mean().where(complete)
    sigma = frame.std(ddof=1).where(complete)
    return pd.concat([frame, pd.DataFrame([mean, sigma], index=[MEAN, SIGMA])])


def _image_size(group: pd.DataFrame) -> int | None:
    """The one input size of a table's jobs (results' `image_size`), None when absent or mixed."""
    sizes = pd.to_numeric(group.get("image_size", pd.Series(dtype=float)), errors="coerce").dropna().unique()
    return int(sizes[0]) if len(sizes) == 1 else None


def build_tables(results: pd.DataFrame, compare: str | None = None, intervals: Sequence[IntervalTable] = (),
                 style: str = "interval") -> list[ResultTable]:
    """The tables of a run's results (as returned by `load_results`), with the run's bootstrap
    `intervals` (`reports.intervals.run_intervals`) where there are some: their cells replace the
    results' values (the point value of an interval is the one its bootstrap resamples, see
    `_apply_intervals`), and metrics or rows that only the bootstrap has (AUPRO, defect types)
    get tables of their own, after the results' tables of the same data set, protocol, preset
    and blur policy."""
    check_compare(compare)
    check_style(style)
    paper = read_paper_results() if compare == "paper" else None
    bootstrap = {(tuple(t.key[k] for k in TABLE_KEYS), t.by_defect): t for t in intervals}
    tables = []
    for _, group in results.groupby(list(TABLE_KEYS), sort=False):
        group = group.dropna(subset=["value"])
        if group.empty:
            continue
        classes = list(dict.fromkeys(group["class"]))
        columns = list(dict.fromkeys(group["column"]))
        references = [c for c in columns if group.loc[group["column"] == c, "method"].iloc[0] in REFERENCE_METHODS]
        columns = references + [c for c in columns if c not in references]
        cells = group.groupby(["class", "column"])["value"]
        mean = cells.mean().unstack("column").reindex(index=classes, columns=columns)
        std = cells.std(ddof=1).unstack("column").reindex(index=classes, columns=columns)
        std = std.reindex(index=[*classes, MEAN, SIGMA])
        published, sources = (pd.DataFrame(index=classes), []) if paper is None else _paper_columns(group, classes, paper)
        key = {k: str(group.iloc[0][k]) for k in TABLE_KEYS}
        table = ResultTable(
            key=key, mean=_with_summary_rows(mean), std=std,
            seeds=sorted(int(s) for s in group["seed"].unique()), seeds_per_column=_seeds_per_column(group),
            paper=_with_summary_rows(published), paper_tables=sources,
            references=references, flags=_mean_map_flags(results, group, mean), image_size=_image_size(group),
            setup_notes=setup_notes(group) if sources else [], style=style,
        )
        interval = bootstrap.pop((tuple(key.values()), False), None)
        if interval is not None:
            _apply_intervals(table, interval)
        tables.append(table)
    tables += [_bootstrap_table(interval, results, style) for interval in bootstrap.values()]
    groups = list(dict.fromkeys(tuple(t.key[k] for k in TABLE_KEYS[:-1]) for t in tables))
    return sorted(tables, key=lambda t: (groups.index(tuple(t.key[k] for k in TABLE_KEYS[:-1])), t.by_defect))


def _bootstrap_table(interval: IntervalTable, results: pd.DataFrame, style: str) -> ResultTable:
    """A table of a metric (or of rows) that only the bootstrap has, e.g. AUPRO or defect types."""
    rows = [r for r in interval.rows if r != MEAN]
    frame = pd.DataFrame(np.nan, index=rows, columns=interval.columns)
    std = frame.copy()
    for (row, column), cell in interval.cells.items():
        if row in frame.index:
            frame.at[row, column] = cell.value
            std.at[row, column] = cell.seed_std
    if not interval.by_defect:
        frame, std = _with_summary_rows(frame), std.reindex(index=[*rows, MEAN, SIGMA])
    group = results[(results[list(GROUP_KEYS)] == pd.Series({k: interval.key[k] for k in GROUP_KEYS})).all(axis=1)]
    table = ResultTable(key=dict(interval.key), mean=frame, std=std,
                        seeds=sorted(int(s) for s in group["seed"].unique()), seeds_per_column=_seeds_per_column(group),
                        paper=pd.DataFrame(index=frame.index),
                        paper_tables=[], references=list(interval.references), image_size=_image_size(group),
                        style=style, by_defect=interval.by_defect)
    _apply_intervals(table, interval)
    return table


def _apply_intervals(table: ResultTable, interval: IntervalTable) -> None:
    """Put the bootstrap's cells into a table: value (mean over seeds of the full test set's value,
    from the predictions, so at the model's resolution), seed std, interval and marks; the Mean
    and σ rows are then recomputed over the classes shown."""
    table.low = pd.DataFrame(np.nan, index=table.mean.index, columns=table.mean.columns)
    table.high = table.low.copy()
    for (row, column), cell in interval.cells.items():
        if row not in table.mean.index or column not in table.mean.columns:
            continue
        table.mean.at[row, column] = cell.value
        table.low.at[row, column], table.high.at[row, column] = cell.low, cell.high
        if row != MEAN:
            table.std.at[row, column] = cell.seed_std
    if SIGMA in table.mean.index:
        classes = [r for r in table.mean.index if r not in (MEAN, SIGMA)]
        table.mean.loc[[MEAN, SIGMA]] = _with_summary_rows(table.mean.loc[classes]).loc[[MEAN, SIGMA]]
    table.marks = {row: interval.marks(row) for row in interval.rows}
    table.n_resamples, table.confidence = interval.n_resamples, interval.confidence


def _mean_map_flags(results: pd.DataFrame, group: pd.DataFrame, mean: pd.DataFrame) -> dict[str, list[str]]:
    """Per class, the columns whose value is not clearly above their own mean map's (over the
    same seeds' mean), for a metric that has a `<metric>_mean_map` counterpart; {} otherwise."""
    key = group.iloc[0]
    counterpart = results[(results["metric"] == f"{key['metric']}{MEAN_MAP_SUFFIX}")
                          & (results[list(TABLE_KEYS[:-1])] == key[list(TABLE_KEYS[:-1])]).all(axis=1)]
    if counterpart.empty:
        return {}
    own = counterpart.groupby(["class", "column"])["value"].mean()
    return {c: [col for col in mean.columns if (c, col) in own.index and pd.notna(mean.at[c, col])
                and not_above_mean_map(mean.at[c, col], own[(c, col)])]
            for c in mean.index}


def check_compare(compare: str | None) -> None:
    if compare is not None and compare not in COMPARE_CHOICES:
        raise XadError(f"--compare {compare!r} is unknown; use --compare {' or '.join(COMPARE_CHOICES)} (or leave it out)")


def check_style(style: str) -> None:
    if style not in CI_STYLES:
        raise XadError(f"--ci {style!r} is unknown; use {', '.join(CI_STYLES)} or off")


def report_tables(run_dir: Path, compare: str | None = None, intervals: Sequence[IntervalTable] = (),
                  style: str = "interval") -> list[ResultTable]:
    """The tables of RUN_DIR's results (and bootstrap `intervals`), without writing them."""
    check_compare(compare)
    return build_tables(load_results(run_dir), compare, intervals, style)


def write_report(run_dir: Path, compare: str | None = None, intervals: Sequence[IntervalTable] = (),
                 style: str = "interval") -> list[Path]:
    """Write every table of the run as CSV and LaTeX to RUN_DIR/tables/; returns the paths
    written. compare="paper" adds the FCDD paper's published numbers as extra columns;
    `intervals` (`reports.intervals.run_intervals`) the bootstrap intervals and marks, shown as
    `style`."""
    return write_tables(run_dir, report_tables(run_dir, compare, intervals, style))


def write_tables(run_dir: Path, tables: Sequence[ResultTable]) -> list[Path]:
    """Write tables as CSV and LaTeX to RUN_DIR/tables/ (each file atomically)."""
    paths = []
    for table in tables:
        for suffix, text in ((".csv", to_csv(table)), (".tex", to_latex(table))):
            path = Path(run_dir) / "tables" / f"{table.slug}{suffix}"
            with atomic_write(path) as handle:
                handle.write(text)
            paths.append(path)
    return paths


def to_csv(table: ResultTable) -> str:
    """The class rows and Mean (σ follows from the class rows; the Mean's interval does not); per
    method its value, "<method> std" (over seeds, ddof=1; empty for a single seed), and where
    the bootstrap gives them "<method> low", "<method> high" and "<method> mark" ("best",
    "tied" or empty); then the published "(paper)" columns."""
    rows = [r for r in table.mean.index if r != SIGMA]
    frame = pd.DataFrame(index=rows)
    for column in table.mean.columns:
        frame[column] = table.mean.loc[rows, column]
        frame[f"{column} std"] = table.std.loc[rows, column]
        if table.low is not None:
            frame[f"{column} low"] = table.low.loc[rows, column]
            frame[f"{column} high"] = table.high.loc[rows, column]
            frame[f"{column} mark"] = [table.mark(r, column) for r in rows]
    frame = pd.concat([frame, table.paper.loc[rows]], axis=1)
    if table.flags:
        frame[FLAG_COLUMN] = [",".join(table.flags.get(row, [])) for row in frame.index]
    return frame.rename_axis("defect type" if table.by_defect else "class").reset_index().to_csv(index=False)


def format_value(value: float, digits: int = DIGITS, missing: str = "–") -> str:
    return missing if pd.isna(value) else f"{value:.{digits}f}"


def cell_text(table: ResultTable, row: str, column: str) -> str:
    """One cell as shown: the value, its bootstrap interval in the table's style where it has one
    ("0.912 [0.890, 0.931]" or "0.912 ± 0.021"), and the std over seeds in parentheses where
    there are several seeds ("0.912 [0.890, 0.931] (0.013)"); marks are the caller's."""
    value = table.mean.at[row, column]
    if pd.isna(value):
        return "–"
    bounds = table.interval(row, column)
    text = format_value(value) if bounds is None else format_interval(value, *bounds, table.style)
    std = table.std.at[row, column] if row in table.std.index else np.nan
    return text + ("" if pd.isna(std) else f" ({std:.{DIGITS}f})")


def format_interval(value: float, low: float, high: float, style: str = "interval", *, digits: int = DIGITS) -> str:
    """"0.912 [0.890, 0.931]" (style "interval") or "0.912 ± 0.021" (style "halfwidth": half the
    interval's width, which need not be centred on the value)."""
    if style == "interval":
        return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
    return f"{value:.{digits}f} ± {(high - low) / 2:.{digits}f}"


_TEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    """Text safe to typeset: LaTeX's special characters escaped."""
    return "".join(_TEX_SPECIALS.get(c, c) for c in str(text))


def _seeds_per_column(group: pd.DataFrame) -> dict[str, int]:
    """How many seeds each column's jobs ran, when that differs between columns; {} otherwise."""
    counts = group.groupby("column", sort=False)["seed"].nunique()
    return {} if counts.nunique() < 2 else {str(c): int(n) for c, n in counts.items()}


def caption_words(table: ResultTable) -> str:
    """What a table shows, in words: metric, data set, protocol, preset with its image size, blur
    policy, seeds, and where the paper's columns come from."""
    key = table.key
    dataset = Path(key["dataset"]).name
    size = table.image_size
    seeds = len(table.seeds)
    spread = ("one seed, so no spread over seeds is shown" if seeds == 1
              else f"mean over {seeds} seeds, their sample standard deviation in parentheses")
    if table.seeds_per_column:
        per_column = pd.Series(table.seeds_per_column)
        usual = per_column.mode()
        if len(usual) == 1 and (per_column == usual[0]).sum() > 1:  # "Grad 3, the others 1"
            listed = per_column[per_column != usual[0]]
            counts = ", ".join([*(f"{c} {n}" for c, n in listed.items()), f"the others {usual[0]}"])
        else:
            counts = ", ".join(f"{c} {n}" for c, n in per_column.items())
        spread = (f"mean over each method's seeds ({counts}), the sample standard deviation over seeds in "
                  f"parentheses where there are several")
    text = (f"{METRIC_NAMES.get(key['metric'], key['metric'])} on {DATASET_NAMES.get(dataset, dataset)}, "
            f"{PROTOCOL_WORDS.get(key['protocol'], key['protocol'] + ' protocol')}, "
            f"{key['preset']} preset{f' ({size} px images)' if size else ''}, {BLUR_WORDS.get(key['blur'], 'blur ' + key['blur'])}; "
            f"{spread}." + ("" if table.by_defect else " Mean and σ: over the classes."))
    competing = table.mean.shape[1] - len(table.references)
    if table.low is not None:
        rows = ("each defect type's anomalous images with all nominal images of its class" if table.by_defect
                else "per class; the Mean's resamples average the classes' resamples")
        shown = "[low, high]" if table.style == "interval" else "± half the width"
        text += (f" Each value comes with {shown} of its {table.confidence:.0%} percentile interval over "
                 f"{table.n_resamples} stratified bootstrap resamples of the test images ({rows}"
                 f"{'; a resample averages the seeds' if seeds > 1 else ''}), computed from the saved maps at the "
                 "model's resolution (results.csv's pixel metrics are at the masks' resolution).")
        if competing > 1:
            text += (" Bold: the best method, whose paired bootstrap difference to every other method excludes 0; "
                     "underlined: the best and the methods not significantly below it (no significant best).")
    elif competing > 1:
        text += " No bootstrap for this metric (or no saved predictions), so no method is marked best."
    if table.paper_tables:
        text += (f" Columns marked (paper): published in Liznerski et al., ICLR 2021, "
                 f"{', '.join(table.paper_tables)}; their Mean and σ are over the classes shown.")
    if table.setup_notes:
        text += " Our setup differs from the paper's: " + " ".join(table.setup_notes)
    return text


def _caption(table: ResultTable) -> str:
    """`caption_words` as LaTeX: specials escaped, ± and σ in math mode."""
    parts = re.split(r"([±σ])", caption_words(table))
    return "".join({"±": "$\\pm$", "σ": "$\\sigma$"}.get(p, tex_escape(p)) for p in parts)


def setup_notes(results: pd.DataFrame) -> list[str]:
    """Where a run's setup differs from the paper's, one sentence each: presets other than
    `paper` (with their image size), random init, and weights other than torchvision's ImageNet
    ones, for the methods concerned."""
    notes = []
    for preset, rows in results.groupby("preset", sort=False):
        if preset == "paper":
            continue
        sizes = sorted({int(s) for s in pd.to_numeric(rows.get("image_size", pd.Series(dtype=float)), errors="coerce").dropna()})
        size = f" at {'/'.join(map(str, sizes))} px" if sizes else ""
        notes.append(f"Preset {preset}: images{size} and shortened training, not the paper's setup "
                     "(224 px for MVTec-AD, its full epochs and schedule).")
    jobs = results.drop_duplicates("job_id")
    backbone = jobs["params"].astype(str).str.contains('"pretrained"')
    random_init = sorted(set(jobs.loc[backbone & (jobs["weights"] == "none"), "method"]))
    if random_init:
        notes.append(f"Random init for {', '.join(random_init)}: the paper starts these networks from "
                     "ImageNet-pretrained VGG weights.")
    from_file = jobs.loc[backbone & jobs["weights"].str.startswith("file:"), ["method", "weights"]].drop_duplicates()
    for method, weights in from_file.itertuples(index=False):
        notes.append(f"{method} used weights from a file ({weights}), not torchvision's ImageNet weights "
                     "that the paper used; a stand-in trained on other data gives other numbers.")
    return notes


#: The LaTeX packages a written table needs (siunitx v3: its `S` columns align the numbers on the
#: decimal point and typeset "0.912 \pm 0.013" as a value with its uncertainty).
LATEX_PACKAGES = r"\usepackage{booktabs} \usepackage{siunitx}"
#: Options of every `S` column: bold set by the Styler (\bfseries) is detected, text mode keeps
#: the body font.
SIUNITX_OPTIONS = "detect-weight, mode=text"
#: A cell without a value: braced, so an `S` column reads it as text, not a number.
LATEX_MISSING = "{--}"
LATEX_FLAG = "$^\\dagger$"
BOLD = "bfseries: ;"  # Styler props: \bfseries before the cell


def siunitx_number(value: float, uncertainty: float = np.nan, *, after: str = "", underline: bool = False,
                   digits: int = DIGITS) -> str:
    """A cell of an `S` column: "0.912" or "0.912 \\pm 0.013" (the column prints the uncertainty
    as ± it), then `after` (LaTeX, e.g. an interval or a mark) as braced text; LATEX_MISSING
    without a value. An underlined cell is text to siunitx (\\num keeps the number's format) and
    leaves the decimal alignment."""
    if pd.isna(value):
        return LATEX_MISSING
    number = f"{value:.{digits}f}" + ("" if pd.isna(uncertainty) else f" \\pm {uncertainty:.{digits}f}")
    if underline:
        return f"{{\\underline{{\\num{{{number}}}{after}}}}}"
    return number + (f"{{{after}}}" if after else "")


def siunitx_column(values: pd.Series, uncertainty: bool = False, digits: int = DIGITS) -> str:
    """An `S` column whose table-format reserves room for the sign, integer digits and decimals
    of `values` (and a separately printed uncertainty)."""
    finite = pd.to_numeric(values, errors="coerce").dropna()
    integers = len(str(int(finite.abs().max()))) if len(finite) else 1
    sign = "-" if (finite < 0).any() else ""
    layout = f"{sign}{integers}.{digits}" + (f"({digits})" if uncertainty else "")
    separate = ", uncertainty-mode=separate" if uncertainty else ""
    return f"S[table-format={layout}{separate}, {SIUNITX_OPTIONS}]"


def latex_float(cells: pd.DataFrame, styles: pd.DataFrame, *, header: str, column_formats: list[str],
                references: int, caption: str, label: str, notes: list[str], source: str) -> str:
    """A table float rendered by pandas' `Styler.to_latex`: booktabs rules (hrules), siunitx `S`
    columns (`column_formats`, one per column of `cells`), the row names and column labels
    escaped by the Styler, `styles` (Styler props per cell, e.g. BOLD) as highlighting, the first
    `references` columns grouped under "References" and the rest under "Methods", a rule above
    the Mean row, and `notes` (LaTeX) under the tabular. `cells` hold siunitx cell text
    (`siunitx_number`), `caption` is LaTeX already."""
    frame = cells.astype(object).copy()
    styles = styles.astype(object).reindex(index=cells.index, columns=cells.columns, fill_value="")
    frame.insert(0, header, [str(name) for name in cells.index])
    styles.insert(0, header, "")
    grouped = 0 < references < cells.shape[1]
    if grouped:
        top = ["", *["References"] * references, *["Methods"] * (cells.shape[1] - references)]
        frame.columns = styles.columns = pd.MultiIndex.from_arrays([top, list(frame.columns)])
    frame.index = styles.index = pd.RangeIndex(len(frame))
    names = frame.columns[0]
    styler = (frame.style.hide(axis="index")
              .format(lambda name: "$\\sigma$" if name == SIGMA else name, escape="latex", subset=[names])
              .format_index(escape="latex", axis=1)
              .apply(lambda _: styles, axis=None))
    latex = styler.to_latex(column_format="l" + "".join(column_formats), hrules=True, siunitx=True,
                            caption=caption, label=label, position="htbp", position_float="centering",
                            multicol_align="c", environment="table")
    lines = latex.splitlines()
    if grouped:  # a rule under each group's label, as booktabs sets it
        span = cells.shape[1] - references
        lines.insert(lines.index("\\toprule") + 2, f"\\cmidrule(lr){{2-{references + 1}}}"
                                                   f"\\cmidrule(lr){{{references + 2}-{references + 1 + span}}}")
    mean_row = next((i for i, line in enumerate(lines) if line.startswith(f"{MEAN} & ")), None)
    if mean_row is not None:
        lines.insert(mean_row, "\\midrule")
    lines[lines.index("\\end{table}"):lines.index("\\end{table}")] = notes
    return "\n".join([f"% Written by xadbench from {source}. Needs {LATEX_PACKAGES}.", *lines, ""])


RICH_MARKS = {BEST: "[bold]%s[/bold]", TIED: "[underline]%s[/underline]"}


def latex_cell(table: ResultTable, row: str, column: str) -> str:
    """One of our cells for an `S` column (`siunitx_number`): the value (with ± half the interval's
    width as its uncertainty in the "halfwidth" style), then as text the interval ("interval"
    style), the std over seeds in parentheses and † where `flags` says so; underlined in a tied
    group (bold, for the significantly best, is the Styler's)."""
    bounds = table.interval(row, column)
    halfwidth = (bounds[1] - bounds[0]) / 2 if bounds and table.style == "halfwidth" else np.nan
    after = f"\\,[{bounds[0]:.{DIGITS}f}, {bounds[1]:.{DIGITS}f}]" if bounds and table.style == "interval" else ""
    std = table.std.at[row, column] if row in table.std.index else np.nan
    after += "" if pd.isna(std) else f" ({std:.{DIGITS}f})"
    after += LATEX_FLAG if column in table.flags.get(row, []) else ""
    return siunitx_number(table.mean.at[row, column], halfwidth, after=after, underline=table.mark(row, column) == TIED)


def to_latex(table: ResultTable) -> str:
    """The table as a booktabs float with decimal-aligned siunitx columns (`latex_float`): our
    columns as `latex_cell`, the significantly best of a row bold, then the paper's."""
    ours, published = list(table.mean.columns), list(table.paper.columns)
    cells = pd.DataFrame(index=table.mean.index, columns=ours + published, dtype=object)
    for row in table.mean.index:
        for column in ours:
            cells.at[row, column] = latex_cell(table, row, column)
        # Published class values keep the paper's two decimals; our Mean and σ over them do not.
        digits = DIGITS if row in (MEAN, SIGMA) else PAPER_DIGITS
        for column in published:
            cells.at[row, column] = siunitx_number(table.paper.at[row, column], digits=digits)
    styles = pd.DataFrame({c: [BOLD if table.mark(r, c) == BEST else "" for r in table.mean.index] for c in ours},
                          index=table.mean.index)
    halfwidths = table.style == "halfwidth" and table.low is not None
    formats = [siunitx_column(table.mean[c], uncertainty=halfwidths and table.low[c].notna().any()) for c in ours]
    formats += [siunitx_column(table.paper[c]) for c in published]
    notes = []
    if any(table.flags.values()):
        notes.append(f"\\par\\smallskip{{\\footnotesize $^\\dagger$ not clearly above the method's own mean map "
                     f"over the test set (by less than {MEAN_MAP_MARGIN:g}): the map has not explained the images.}}")
    if any(table.mean[c].isna().all() for c in ours):
        notes.append("\\par{\\footnotesize -- : not applicable (no trained layers, or a score that ignores the pixels).}")
    return latex_float(cells, styles, header="Defect type" if table.by_defect else "Class", column_formats=formats,
                       references=len(table.references), caption=_caption(table),
                       label=f"tab:xadbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.slug)}", notes=notes,
                       source="the run's results and predictions")


def summary_row(table: ResultTable) -> str:
    """The row a one-line summary of a table shows: Mean, or the class of a one-class table."""
    classes = [r for r in table.mean.index if r not in (MEAN, SIGMA)]
    return classes[0] if len(classes) == 1 else MEAN


def summary_table(tables: list[ResultTable]) -> RichTable:
    """A compact terminal view: one line per table (defect-type tables left out) with the Mean
    row (the class of a one-class run) of every column, as the tables show it (interval, seed
    std, bold: significantly best, underlined: tied group); key parts shared by all tables go
    into the title."""
    def shown(key: str, table: ResultTable) -> str:
        return Path(table.key[key]).name if key == "dataset" else table.key[key]

    tables = [t for t in tables if not t.by_defect]
    shared = [k for k in TABLE_KEYS[:-1] if len({shown(k, t) for t in tables}) == 1]
    keys = [k for k in TABLE_KEYS if k not in shared]
    columns = list(dict.fromkeys(c for t in tables for c in [*t.mean.columns, *t.paper.columns]))
    context = ", ".join(f"{k} {shown(k, tables[0])}" for k in shared) if tables else ""
    tested = next((t for t in tables if t.low is not None), None)
    legend = ("no bootstrap intervals: nothing marked" if tested is None else
              f"{tested.confidence:.0%} bootstrap interval of {tested.n_resamples} resamples, (std over seeds); "
              "bold: significantly best, underlined: tied group")
    summary = RichTable(title=f"Mean over classes{': ' + context if context else ''} ({legend})")
    for name in ["row", *keys, *columns]:
        summary.add_column(name, justify="right" if name in columns else "left")
    for table in tables:
        row = summary_row(table)
        cells = []
        for column in columns:
            if column in table.mean.columns:
                cells.append(RICH_MARKS.get(table.mark(row, column), "%s") % cell_text(table, row, column))
            elif column in table.paper.columns:
                cells.append(format_value(table.paper.at[row, column], missing=""))
            else:
                cells.append("")
        summary.add_row(row, *(shown(k, table) for k in keys), *cells)
    return summary
