"""Result tables of a run: one per (data set, protocol, preset, blur policy, metric), the classes
(then Mean and σ) as rows and the methods as columns; a cell is the mean over seeds with its
bootstrap interval (`reports.intervals`) and the std over seeds; `compare="paper"` adds the FCDD
paper's numbers. How cells, marks and references are decided: docs/design.md, "Result tables".
The tables are written (CSV, LaTeX) and shown (terminal) by `reports.table_formats`.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xadbench.errors import XadError
from xadbench.files import safe_name
from xadbench.metrics.registry import list_metrics
from xadbench.registry import methods
from xadbench.run_folder import read_results, results_store
from xadbench.sanity import MEAN_MAP_SUFFIX, not_above_mean_map

#: A `reports.intervals.IntervalTable`, named but not imported: intervals builds on this module.
IntervalTable = Any

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
COMPARE_CHOICES = ("paper",)
TABLE_KEYS = ("dataset", "protocol", "preset", "blur", "metric")
#: The part of TABLE_KEYS one bootstrap covers (all its metrics resample the same test images).
GROUP_KEYS = TABLE_KEYS[:-1]
#: How a cell shows its bootstrap interval: "value [low, high]", "value ± half-width", or no
#: bootstrap at all ("off"); the written file names say the style (`ResultTable.file_stem`).
CI_STYLES = ("interval", "halfwidth", "off")
#: The metrics of the main table (`reports.table_formats.main_table`), as the paper's Table 2.
HEADLINE_METRICS = list_metrics(headline=True)
#: Marks of a row's methods (`reports.intervals.IntervalTable.marks`).
BEST, TIED = "best", "tied"
MEAN, SIGMA = "Mean", "σ"
#: The data set key of the cross-data-set tables, whose rows are the run's data sets.
ACROSS_DATASETS = "all data sets"
PROTOCOL_WORDS = {
    "unsupervised": "unsupervised (no real defects in training)",
    "semi-supervised": "semi-supervised (a few real defects per type in training)",
    "synthetic-gt": "synthetic ground truth (confetti anomalies with their own masks)",
}
BLUR_WORDS = {"gaussian": "baselines' maps blurred with FCDD's Gaussian kernel (FCDD's not blurred)",
              "none": "maps not blurred"}
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
    compare: str | None = None  # the report's --compare (its file names say it)
    by_defect: bool = False  # rows are "<class>/<defect type>" (no Mean and σ)
    seeds_per_column: dict[str, int] = field(default_factory=dict)  # where methods ran different seeds

    @property
    def slug(self) -> str:
        """File name stem: the key parts, safe on every file system."""
        parts = [Path(self.key["dataset"]).name] + [self.key[k] for k in TABLE_KEYS[1:]]
        parts += ["defects"] if self.by_defect else []
        return safe_name("_".join(parts))

    @property
    def file_stem(self) -> str:
        """`slug` and the report options that change the written file (`options_suffix`)."""
        return self.slug + options_suffix(self.style, self.compare)

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
    labels = results["method"].map({m: methods.display_name(m) for m in results["method"].unique()})
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
    is_reference = {m: methods.is_reference(m) for m in results["method"].unique()}  # once per method, not per table
    tables = []
    for _, group in results.groupby(list(TABLE_KEYS), sort=False):
        group = group.dropna(subset=["value"])
        if group.empty:
            continue
        classes = list(dict.fromkeys(group["class"]))
        columns = list(dict.fromkeys(group["column"]))
        references = [c for c in columns if is_reference[group.loc[group["column"] == c, "method"].iloc[0]]]
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
            setup_notes=setup_notes(group) if sources else [], style=style, compare=compare,
        )
        interval = bootstrap.pop((tuple(key.values()), False), None)
        if interval is not None:
            _apply_intervals(table, interval)
        tables.append(table)
    tables += [_bootstrap_table(interval, results, style, compare) for interval in bootstrap.values()]
    groups = list(dict.fromkeys(tuple(t.key[k] for k in TABLE_KEYS[:-1]) for t in tables))
    tables = sorted(tables, key=lambda t: (groups.index(tuple(t.key[k] for k in TABLE_KEYS[:-1])), t.by_defect))
    return tables + cross_dataset_tables(tables)


def cross_dataset_tables(tables: Sequence[ResultTable]) -> list[ResultTable]:
    """For a run over several data sets, per protocol, preset, blur policy and metric, the table
    papers print beside the per-class ones: one row per data set (its Mean row, the mean over its
    classes, as its own table shows it) and the Mean and σ over the data sets. None for a run
    over one data set."""
    groups: dict[tuple[str, ...], list[ResultTable]] = {}
    for table in tables:
        if not table.by_defect:
            groups.setdefault(tuple(table.key[k] for k in TABLE_KEYS[1:]), []).append(table)
    out = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        columns = list(dict.fromkeys(c for t in members for c in t.mean.columns))
        names = [Path(t.key["dataset"]).name for t in members]
        frame = pd.DataFrame([t.mean.loc[MEAN].reindex(columns) for t in members], index=names, columns=columns)
        summary = _with_summary_rows(frame)
        out.append(ResultTable(
            key={"dataset": ACROSS_DATASETS, **dict(zip(TABLE_KEYS[1:], key))}, mean=summary,
            std=pd.DataFrame(np.nan, index=summary.index, columns=columns),
            seeds=sorted({s for t in members for s in t.seeds}), paper=pd.DataFrame(index=summary.index),
            paper_tables=[], references=[c for c in columns if any(c in t.references for t in members)],
            style=members[0].style))
    return out


def _bootstrap_table(interval: IntervalTable, results: pd.DataFrame, style: str, compare: str | None) -> ResultTable:
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
                        style=style, compare=compare, by_defect=interval.by_defect)
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


def options_suffix(style: str, compare: str | None) -> str:
    """What a written file's name adds for the report's options: the interval style unless it is
    the default ("_ci-halfwidth", "_ci-off") and the --compare source ("_paper")."""
    return ("" if style == "interval" else f"_ci-{style}") + (f"_{compare}" if compare else "")


def check_compare(compare: str | None) -> None:
    if compare is not None and compare not in COMPARE_CHOICES:
        raise XadError(f"--compare {compare!r} is unknown; use --compare {' or '.join(COMPARE_CHOICES)} (or leave it out)")


def check_style(style: str) -> None:
    if style not in CI_STYLES:
        raise XadError(f"--ci {style!r} is unknown; use {', '.join(CI_STYLES)}")


def report_tables(run_dir: Path, compare: str | None = None, intervals: Sequence[IntervalTable] = (),
                  style: str = "interval") -> list[ResultTable]:
    """The tables of RUN_DIR's results (and bootstrap `intervals`), without writing them."""
    check_compare(compare)
    return build_tables(load_results(run_dir), compare, intervals, style)


def _seeds_per_column(group: pd.DataFrame) -> dict[str, int]:
    """How many seeds each column's jobs ran, when that differs between columns; {} otherwise."""
    counts = group.groupby("column", sort=False)["seed"].nunique()
    return {} if counts.nunique() < 2 else {str(c): int(n) for c, n in counts.items()}


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
