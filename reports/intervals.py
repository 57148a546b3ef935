"""Bootstrap intervals and paired comparisons of a run, from its saved predictions.

For every (data set, protocol, preset, blur policy) of a run and every class, the test images of
all its jobs are resampled together: one stratified bootstrap (`metrics.bootstrap`, nominal and
anomalous images drawn separately, 1,000 resamples, seeded by the class name) over the union of
the jobs' test images (seeds of the semi-supervised protocol hold out different labelled
anomalies; a job counts the resampled images it scored). Every method is scored on the same
resamples, so the difference of two methods on a resample is a paired difference and its
percentile interval compares them. With several seeds a resample's value is the mean of the
seeds' values on the same resampled images, so the interval covers test-set and training
variance together; the std over seeds of the full-test-set values is reported beside it.

The metrics are computed from the predictions files (`runner.run_job`): maps at the model's
resolution after the run's blur policy, stored as float16 like the saved maps, masks at the same
resolution (nearest). Pixel numbers therefore differ slightly from results.csv's, which are at
the masks' own resolution; the point value shown with an interval is the one of these maps.

A class's Mean row resamples every class independently and averages the classes' values per
resample. Defect-type rows ("<class>/<type>") take that type's anomalous images and all nominal
images of the class.

Marks: a best value of a row is "best" when its paired difference to every other method's
interval excludes 0; otherwise the methods whose difference to the best includes 0 form the
"tied" group. Reference maps (`sanity.REFERENCE_METHODS`) come first and are never marked.

Written by `write_intervals`: RUN_DIR/intervals.csv (one row per cell: value, ci_low, ci_high,
seed_std, mark) and per table RUN_DIR/tables/<slug>_ci.csv and .tex ("<slug>_defects_ci" for the
defect-type tables), cells as `value [low, high]` or `value ± half-width` (CI_STYLES).
"""
from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table as RichTable

from xadbench.errors import XadError
from xadbench.evaluator import IMAGE_AUC, PER_IMAGE_PIXEL_AUC, PIXEL_AUC
from xadbench.metrics.aupro import AUPRO
from xadbench.metrics.bootstrap import CONFIDENCE, RESAMPLES, TestSet, percentile_interval, stratified_weights
from xadbench.reports.tables import (BOLD, DIGITS, LATEX_MISSING, METRIC_NAMES, TABLE_KEYS, format_interval, latex_float,
                                     load_results, siunitx_column, siunitx_number, tex_escape)
from xadbench.heatmaps import saved_maps
from xadbench.runner import atomic_write, load_predictions
from xadbench.sanity import REFERENCE_METHODS

METRICS = (IMAGE_AUC, PIXEL_AUC, PER_IMAGE_PIXEL_AUC, AUPRO)
CI_STYLES = ("interval", "halfwidth")
PIXEL_METRICS = (PIXEL_AUC, PER_IMAGE_PIXEL_AUC, AUPRO)
MEAN = "Mean"
NOMINAL = "good"
BEST, TIED = "best", "tied"
GROUP_KEYS = ("dataset", "protocol", "preset", "blur")


@dataclass
class Cell:
    """One (row, method) of an interval table: the point value (mean over seeds of the full test
    set's value), its bootstrap interval, the std over seeds and the resampled values."""

    value: float
    low: float
    high: float
    seed_std: float
    n_seeds: int
    resamples: np.ndarray = field(repr=False)


@dataclass
class IntervalTable:
    key: dict[str, str]  # TABLE_KEYS
    rows: list[str]
    columns: list[str]
    cells: dict[tuple[str, str], Cell]
    by_defect: bool = False
    n_resamples: int = RESAMPLES
    confidence: float = CONFIDENCE
    references: list[str] = field(default_factory=list)  # first in `columns`, never marked

    @property
    def slug(self) -> str:
        parts = [Path(self.key["dataset"]).name] + [self.key[k] for k in TABLE_KEYS[1:]]
        parts += ["defects"] if self.by_defect else []
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts + ["ci"]))

    def cell(self, row: str, column: str) -> Cell | None:
        return self.cells.get((row, column))

    def difference(self, row: str, a: str, b: str) -> tuple[float, float, float] | None:
        """Paired difference a − b on one row: (value, low, high) or None if a cell is missing."""
        ca, cb = self.cell(row, a), self.cell(row, b)
        if ca is None or cb is None:
            return None
        low, high = percentile_interval(ca.resamples - cb.resamples, self.confidence)
        return ca.value - cb.value, float(low), float(high)

    def marks(self, row: str) -> dict[str, str]:
        """{column: "best" | "tied"} for one row (see the module docstring)."""
        present = [c for c in self.columns if self.cell(row, c) is not None and c not in self.references]
        if len(present) < 2:
            return {}
        best = max(present, key=lambda c: self.cell(row, c).value)
        others = [c for c in present if c != best]
        lows = {c: self.difference(row, best, c)[1] for c in others}
        if all(low > 0 for low in lows.values()):
            return {best: BEST}
        return {best: TIED, **{c: TIED for c, low in lows.items() if low <= 0}}


def _class_seed(class_name: str, seed: int) -> int:
    return (zlib.crc32(class_name.encode()) + seed) % 2**32


def _prediction_path(run_dir: Path, job_id: str) -> Path:
    return run_dir / "predictions" / f"{job_id}.npz"


def _load_jobs(run_dir: Path, jobs: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    return {job_id: load_predictions(_prediction_path(run_dir, job_id)) for job_id in jobs["job_id"].unique()}


def _test_set(p: dict[str, np.ndarray], blur: str, metric_needs_maps: bool) -> TestSet:
    if not metric_needs_maps or "mask" not in p:
        return TestSet(p["score"], p["label"])
    maps = saved_maps(p, blur).astype(np.float16)
    return TestSet(p["score"], p["label"], list(maps), list(p["mask"]))


def _metric_resamples(test_set: TestSet, metric: str, weights: np.ndarray) -> np.ndarray:
    if metric == IMAGE_AUC:
        return test_set.image_auc_resamples(weights)
    if metric == PIXEL_AUC:
        return test_set.pixel_auc_resamples(weights)
    if metric == PER_IMAGE_PIXEL_AUC:
        return test_set.per_image_pixel_auc_resamples(weights)
    return test_set.aupro_resamples(weights)


def interval_tables(run_dir: Path, n_resamples: int = RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE, metrics: tuple[str, ...] = METRICS) -> list[IntervalTable]:
    """Interval tables (per class + Mean, and per defect type) of every metric the run's
    predictions support, for every (data set, protocol, preset, blur policy) of its results."""
    run_dir = Path(run_dir)
    results = load_results(run_dir)
    saved = results["job_id"].map(lambda job_id: _prediction_path(run_dir, job_id).is_file())
    missing = results.loc[~saved, "job_id"].unique()
    if len(missing) and saved.any():
        warnings.warn(f"{len(missing)} job(s) of the run have no predictions in {run_dir / 'predictions'} and are "
                      f"left out of the intervals (e.g. {missing[0]})", stacklevel=2)
    results = results[saved]
    tables = []
    for group_key, group in results.groupby(list(GROUP_KEYS), sort=False):
        key = dict(zip(GROUP_KEYS, group_key))
        jobs = group.drop_duplicates("job_id")
        columns = list(dict.fromkeys(jobs["column"]))
        references = [c for c in columns if jobs.loc[jobs["column"] == c, "method"].iloc[0] in REFERENCE_METHODS]
        columns = references + [c for c in columns if c not in references]
        per_metric = {m: {} for m in metrics}   # metric -> {(row, column): Cell}
        defect_rows: dict[str, list[str]] = {m: [] for m in metrics}
        class_resamples = {m: {} for m in metrics}  # metric -> column -> [class resamples]
        classes = list(dict.fromkeys(jobs["class"]))
        for class_name in classes:
            class_jobs = jobs[jobs["class"] == class_name]
            predictions = _load_jobs(run_dir, class_jobs)
            # The union of the jobs' test images, by key.
            union: dict[str, tuple[int, str]] = {}
            for p in predictions.values():
                for k, label, category in zip(p["key"], p["label"], p["category"]):
                    union.setdefault(str(k), (int(label), str(category)))
            keys = list(union)
            labels = np.array([union[k][0] for k in keys])
            categories = np.array([union[k][1] for k in keys])
            if labels.all() or not labels.any():
                continue  # a bootstrap of AUCs needs both classes
            position = {k: i for i, k in enumerate(keys)}
            subsets = {class_name: np.ones(len(keys), dtype=bool)}
            defects = sorted(set(categories[labels == 1]) - {NOMINAL})
            if len(defects) > 1:
                for defect in defects:
                    subsets[f"{class_name}/{defect}"] = (labels == 0) | (categories == defect)
            weights = {row: stratified_weights(labels, n_resamples, _class_seed(row, seed), subset)
                       for row, subset in subsets.items()}
            for column in columns:
                seeds = class_jobs[class_jobs["column"] == column]
                if seeds.empty:
                    continue
                values = {m: {row: [] for row in subsets} for m in metrics}
                for job_id in seeds["job_id"]:
                    p = predictions[job_id]
                    index = np.array([position[str(k)] for k in p["key"]])
                    test_set = _test_set(p, key["blur"], any(m in PIXEL_METRICS for m in metrics))
                    for metric in metrics:
                        if metric in PIXEL_METRICS and test_set.pixels is None:
                            continue
                        for row, subset in subsets.items():
                            full = subset[index].astype(float)[None]
                            both = np.vstack([full, weights[row][:, index]])
                            values[metric][row].append(_metric_resamples(test_set, metric, both))
                for metric in metrics:
                    for row in subsets:
                        runs = values[metric][row]
                        if not runs:
                            continue
                        runs = np.array(runs)  # seeds × (1 + resamples)
                        resampled = runs[:, 1:].mean(axis=0)
                        low, high = percentile_interval(resampled, confidence)
                        per_metric[metric][(row, column)] = Cell(
                            float(runs[:, 0].mean()), float(low), float(high),
                            float(runs[:, 0].std(ddof=1)) if len(runs) > 1 else np.nan, len(runs), resampled)
                        if row == class_name:
                            class_resamples[metric].setdefault(column, []).append((class_name, runs[:, 0].mean(), resampled))
                        elif row not in defect_rows[metric]:
                            defect_rows[metric].append(row)
        for metric in metrics:
            cells = per_metric[metric]
            if not cells:
                continue
            rows = [c for c in classes if any((c, col) in cells for col in columns)]
            if len(rows) > 1:
                for column, entries in class_resamples[metric].items():
                    if len(entries) == len(rows):  # the Mean compares the same classes
                        resampled = np.mean([r for _, _, r in entries], axis=0)
                        low, high = percentile_interval(resampled, confidence)
                        seeds = min(cells[(c, column)].n_seeds for c in rows)
                        cells[(MEAN, column)] = Cell(float(np.mean([v for _, v, _ in entries])), float(low),
                                                     float(high), np.nan, seeds, resampled)
                rows.append(MEAN)
            table_key = {**key, "metric": metric}
            table_key = {k: str(table_key[k]) for k in TABLE_KEYS}
            tables.append(IntervalTable(table_key, rows, columns, cells, False, n_resamples, confidence, references))
            if defect_rows[metric]:
                tables.append(IntervalTable(table_key, defect_rows[metric], columns, cells, True, n_resamples,
                                            confidence, references))
    return tables


def interval_rows(tables: list[IntervalTable]) -> pd.DataFrame:
    """One row per cell: the key, row ("class" or "class/defect"), method column, value, ci_low,
    ci_high, seed_std, n_seeds, resamples, confidence."""
    records = []
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = table.cell(row, column)
                if cell is None:
                    continue
                records.append({**table.key, "row": row, "column": column, "value": cell.value,
                                "ci_low": cell.low, "ci_high": cell.high, "seed_std": cell.seed_std,
                                "n_seeds": cell.n_seeds, "resamples": table.n_resamples,
                                "confidence": table.confidence, "mark": table.marks(row).get(column, "")})
    return pd.DataFrame.from_records(records)


def _cell_text(table: IntervalTable, row: str, column: str, style: str) -> str:
    cell = table.cell(row, column)
    if cell is None:
        return "–"
    text = format_interval(cell.value, cell.low, cell.high, style)
    if cell.n_seeds > 1 and not np.isnan(cell.seed_std):
        text += f" ({cell.seed_std:.{DIGITS}f})"
    return text + {BEST: " *", TIED: " ~"}.get(table.marks(row).get(column), "")


def _latex_cell(table: IntervalTable, row: str, column: str, style: str) -> str:
    """A siunitx cell: the value as a number (with ± half-width as its uncertainty), the interval
    and the seed std as text after it; underlined in the tied group."""
    cell = table.cell(row, column)
    if cell is None:
        return LATEX_MISSING
    after = f"\\,[{cell.low:.{DIGITS}f}, {cell.high:.{DIGITS}f}]" if style == "interval" else ""
    if cell.n_seeds > 1 and not np.isnan(cell.seed_std):
        after += f" ({cell.seed_std:.{DIGITS}f})"
    halfwidth = (cell.high - cell.low) / 2 if style == "halfwidth" else np.nan
    return siunitx_number(cell.value, halfwidth, after=after, underline=table.marks(row).get(column) == TIED)


def to_interval_csv(table: IntervalTable) -> str:
    """Rows as in the table; per method its value, "<m> low", "<m> high", "<m> seed std" (empty
    for one seed or the Mean) and "<m> mark" ("best", "tied" or empty)."""
    frame = pd.DataFrame(index=table.rows)
    for column in table.columns:
        cells = [table.cell(row, column) for row in table.rows]
        frame[column] = [np.nan if c is None else c.value for c in cells]
        frame[f"{column} low"] = [np.nan if c is None else c.low for c in cells]
        frame[f"{column} high"] = [np.nan if c is None else c.high for c in cells]
        frame[f"{column} seed std"] = [np.nan if c is None else c.seed_std for c in cells]
        frame[f"{column} mark"] = [table.marks(row).get(column, "") for row in table.rows]
    return frame.rename_axis("defect type" if table.by_defect else "class").reset_index().to_csv(index=False)


def _caption(table: IntervalTable, style: str) -> str:
    key = table.key
    seeds = max((c.n_seeds for c in table.cells.values()), default=1)
    shown = "[low, high]" if style == "interval" else "$\\pm$ half-width"
    rows = ("each defect type's anomalous images with all nominal images" if table.by_defect
            else "per class; Mean: classes resampled independently, averaged per resample")
    text = (f"{METRIC_NAMES.get(key['metric'], key['metric'])} on {tex_escape(Path(key['dataset']).name)}, protocol "
            f"{tex_escape(key['protocol'])}, preset {tex_escape(key['preset'])}, blur {tex_escape(key['blur'])}, "
            f"at the model's resolution: value {shown} of the {table.confidence:.0%} percentile interval of "
            f"{table.n_resamples} stratified bootstrap resamples of the test images ({rows})")
    if seeds > 1:
        text += f"; mean over {seeds} seeds per resample, (std over seeds) in parentheses"
    text += ("; bold: best, its paired difference to every other method excludes 0; underlined: the best and "
             "the methods not significantly below it.")
    return text.replace("%", "\\%")




def to_interval_latex(table: IntervalTable, style: str) -> str:
    """A booktabs float with siunitx columns (`tables.latex_float`)."""
    cells = pd.DataFrame({c: [_latex_cell(table, r, c, style) for r in table.rows] for c in table.columns},
                         index=table.rows)
    styles = pd.DataFrame({c: [BOLD if table.marks(r).get(c) == BEST else "" for r in table.rows] for c in table.columns},
                          index=table.rows)  # the tied group is underlined in its cells' text
    values = {c: pd.Series([cell.value for (r, col), cell in table.cells.items() if col == c], dtype=float)
              for c in table.columns}
    formats = [siunitx_column(values[c], uncertainty=style == "halfwidth") for c in table.columns]
    return latex_float(cells, styles, header="Defect type" if table.by_defect else "Class", column_formats=formats,
                       references=len(table.references), caption=_caption(table, style),
                       label=f"tab:xadbench-{re.sub(r'[^A-Za-z0-9]+', '-', table.slug)}", notes=[],
                       source="the run's predictions")


def write_intervals(run_dir: Path, style: str = "interval", tables: list[IntervalTable] | None = None,
                    **options) -> list[Path]:
    """Compute (unless given) and write the interval tables and RUN_DIR/intervals.csv; returns
    the paths written. `options` go to `interval_tables`."""
    check_style(style)
    run_dir = Path(run_dir)
    tables = interval_tables(run_dir, **options) if tables is None else tables
    paths = []
    for table in tables:
        for suffix, text in ((".csv", to_interval_csv(table)), (".tex", to_interval_latex(table, style))):
            path = run_dir / "tables" / f"{table.slug}{suffix}"
            with atomic_write(path) as handle:
                handle.write(text)
            paths.append(path)
    with atomic_write(run_dir / "intervals.csv") as handle:
        handle.write(interval_rows(tables).to_csv(index=False))
    return [*paths, run_dir / "intervals.csv"]


def check_style(style: str) -> None:
    if style not in CI_STYLES:
        raise XadError(f"--ci {style!r} is unknown; use {', '.join(CI_STYLES)} or off")


def interval_summary(tables: list[IntervalTable], style: str) -> RichTable:
    """Terminal view: the class tables' last row (Mean, or the one class) per metric."""
    columns = list(dict.fromkeys(c for t in tables for c in t.columns))
    summary = RichTable(title=f"Bootstrap {tables[0].confidence:.0%} intervals ({tables[0].n_resamples} resamples; "
                              "* best, ~ tied group)" if tables else "Bootstrap intervals")
    for name in ["protocol", "blur", "metric", "row", *columns]:
        summary.add_column(name, justify="right" if name in columns else "left")
    for table in tables:
        if table.by_defect:
            continue
        row = table.rows[-1]
        summary.add_row(table.key["protocol"], table.key["blur"], table.key["metric"], row,
                        *(_cell_text(table, row, c, style) if c in table.columns else "" for c in columns))
    return summary
