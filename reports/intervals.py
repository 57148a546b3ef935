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

The metrics are the headline metrics of the metric registry (`metrics.registry`), computed from
the predictions files (`runner.run_job`) with their declared resample functions: maps at the
model's resolution after the run's blur policy, as float16 like the saved maps, masks at the
same resolution (nearest): the very arrays the runner scored results.csv's values from, so the
point value shown with an interval is results.csv's.

A class's Mean row resamples every class independently and averages the classes' values per
resample. Defect-type rows ("<class>/<type>") take that type's anomalous images and all nominal
images of the class.

Marks: a best value of a row is "best" when its paired difference to every other method's
interval excludes 0; otherwise the methods whose difference to the best includes 0 form the
"tied" group. Reference maps (methods that declare `Method.reference`) come first and are never marked.

Stored in the run's results store (`run_intervals`): table `intervals` of results.sqlite, one row
per cell (value, ci_low, ci_high, seed_std, n_seeds, mark and the resampled values, so paired
differences need no recomputation), keyed by the bootstrap settings (resamples, seed, confidence)
and `job_set`, a hash of the jobs and predictions files the intervals come from: a rerun job or a
new one makes them stale and they are recomputed. `reports.tables` shows them in every table;
RUN_DIR/intervals.csv is their export.
"""
from __future__ import annotations

import hashlib
import json
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xadbench.defaults import RESAMPLES
from xadbench.files import atomic_write, safe_name
from xadbench.heatmaps import PostProcessor, scored_maps
from xadbench.metrics.bootstrap import CONFIDENCE, TestSet, percentile_interval, stratified_weights
from xadbench.metrics.registry import get_metric, list_metrics
from xadbench.registry import methods as method_plugins
from xadbench.reports.run import Run
from xadbench.reports.tables import BEST, GROUP_KEYS, MEAN, TABLE_KEYS, TIED
from xadbench.run_folder import results_store

NOMINAL = "good"


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
        return safe_name("_".join(parts + ["ci"]))

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


def class_seed(class_name: str, seed: int) -> int:
    return (zlib.crc32(class_name.encode()) + seed) % 2**32


def resampled_maps(p: dict[str, np.ndarray], blur: str) -> list[np.ndarray]:
    """A job's maps as the bootstrap resamples them and the runner scored them
    (`heatmaps.scored_maps`); one array per test image."""
    return list(scored_maps(p["anomaly_map"], PostProcessor.from_record(p["postprocessor"], "predictions"), blur))


def _test_set(p: dict[str, np.ndarray], blur: str, metric_needs_maps: bool) -> TestSet:
    if not metric_needs_maps or "mask" not in p:
        return TestSet(p["score"], p["label"])
    return TestSet(p["score"], p["label"], resampled_maps(p, blur), list(p["mask"]))


def interval_tables(run: Run | Path, n_resamples: int = RESAMPLES, seed: int = 0,
                    confidence: float = CONFIDENCE, metrics: tuple[str, ...] | None = None) -> list[IntervalTable]:
    """Interval tables (per class + Mean, and per defect type) of every headline metric of the
    metric registry (or of `metrics`) the run's predictions support, for every (data set, protocol, preset, blur policy) of its results."""
    run = Run.load(run)
    metrics = list_metrics(headline=True) if metrics is None else metrics
    results = run.results
    saved = results["job_id"].map(run.has_predictions)
    missing = results.loc[~saved, "job_id"].unique()
    if len(missing) and saved.any():
        warnings.warn(f"{len(missing)} job(s) of the run have no predictions in {run.path / 'predictions'} and are "
                      f"left out of the intervals (e.g. {missing[0]})", stacklevel=2)
    results = results[saved]
    is_reference = {m: method_plugins.is_reference(m) for m in results["method"].unique()}  # once per method
    tables = []
    for group_key, group in results.groupby(list(GROUP_KEYS), sort=False):
        key = dict(zip(GROUP_KEYS, group_key))
        jobs = group.drop_duplicates("job_id")
        columns = list(dict.fromkeys(jobs["column"]))
        references = [c for c in columns if is_reference[jobs.loc[jobs["column"] == c, "method"].iloc[0]]]
        columns = references + [c for c in columns if c not in references]
        per_metric = {m: {} for m in metrics}   # metric -> {(row, column): Cell}
        defect_rows: dict[str, list[str]] = {m: [] for m in metrics}
        class_resamples = {m: {} for m in metrics}  # metric -> column -> [class resamples]
        classes = list(dict.fromkeys(jobs["class"]))
        for class_name in classes:
            class_jobs = jobs[jobs["class"] == class_name]
            predictions = {job_id: run.predictions(job_id) for job_id in class_jobs["job_id"].unique()}
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
            weights = {row: stratified_weights(labels, n_resamples, class_seed(row, seed), subset)
                       for row, subset in subsets.items()}
            for column in columns:
                seeds = class_jobs[class_jobs["column"] == column]
                if seeds.empty:
                    continue
                values = {m: {row: [] for row in subsets} for m in metrics}
                for job_id in seeds["job_id"]:
                    p = predictions[job_id]
                    index = np.array([position[str(k)] for k in p["key"]])
                    test_set = _test_set(p, key["blur"], any(get_metric(m).needs_masks for m in metrics))
                    for metric in metrics:
                        if get_metric(metric).needs_masks and test_set.pixels is None:
                            continue
                        for row, subset in subsets.items():
                            full = subset[index].astype(float)[None]
                            both = np.vstack([full, weights[row][:, index]])
                            values[metric][row].append(get_metric(metric).resample(test_set, both))
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


INTERVALS_TABLE = "intervals"
#: Bump when the computation changes, so stored intervals of the old code count as stale.
INTERVALS_VERSION = 1
STORE_KEY = ("job_set", "resamples", "ci_seed", "confidence")
STORE_COLUMNS = (*STORE_KEY, *GROUP_KEYS, "metric", "by_defect", "row", "row_index", "column", "column_index",
                 "reference", "value", "ci_low", "ci_high", "seed_std", "n_seeds", "mark", "draws")


def job_set(run: Run) -> str:
    """What the intervals of a run depend on, as one hash: every job with predictions (its id,
    table group, class and column label, and its predictions file's size and modification
    time, so a rerun job counts as changed), the registry's headline metrics (a newly declared metric
    gets its intervals) and INTERVALS_VERSION."""
    jobs = run.results.drop_duplicates(["job_id", "blur"])
    entries = []
    for job_id, cls, column, *group in jobs[["job_id", "class", "column", *GROUP_KEYS]].itertuples(index=False):
        path = run.prediction_path(job_id)
        if path.is_file():
            stat = path.stat()
            entries.append([job_id, cls, column, *map(str, group), stat.st_size, stat.st_mtime_ns])
    metrics = list_metrics(headline=True)
    return hashlib.sha1(json.dumps([INTERVALS_VERSION, metrics, sorted(entries)]).encode()).hexdigest()[:16]


def _store_key(run: Run, n_resamples: int, seed: int, confidence: float) -> dict[str, object]:
    return dict(zip(STORE_KEY, (job_set(run), n_resamples, seed, confidence)))


def store_intervals(run: Run, tables: list[IntervalTable], n_resamples: int, seed: int,
                    confidence: float = CONFIDENCE) -> None:
    """Write the interval tables into the run's results store (table `intervals`, one row per
    cell with value, ci_low, ci_high, seed_std, mark and the resampled values), replacing those
    of the same bootstrap settings in one transaction."""
    key = _store_key(run, n_resamples, seed, confidence)
    records = []
    for table in tables:
        marks = {row: table.marks(row) for row in table.rows}
        for i, row in enumerate(table.rows):
            for j, column in enumerate(table.columns):
                cell = table.cell(row, column)
                if cell is None:
                    continue
                records.append((*key.values(), *(table.key[k] for k in GROUP_KEYS), table.key["metric"],
                                int(table.by_defect), row, i, column, j, int(column in table.references),
                                cell.value, cell.low, cell.high, None if np.isnan(cell.seed_std) else cell.seed_std,
                                cell.n_seeds, marks[row].get(column, ""),
                                np.asarray(cell.resamples, dtype=np.float64).tobytes()))
    store = results_store(run.path).open()
    store.replace_derived(INTERVALS_TABLE, STORE_COLUMNS, {k: key[k] for k in STORE_KEY[1:]}, records)


def stored_intervals(run: Run, n_resamples: int, seed: int, confidence: float = CONFIDENCE) -> list[IntervalTable] | None:
    """The interval tables stored for the run's current jobs and these bootstrap settings; None
    when there are none or they were computed from other predictions (stale)."""
    key = _store_key(run, n_resamples, seed, confidence)
    found = results_store(run.path).read_derived(INTERVALS_TABLE, STORE_COLUMNS, key)
    if not found:
        return None
    tables: dict[tuple, IntervalTable] = {}
    order: dict[tuple, dict[str, dict[str, int]]] = {}  # table -> rows / columns -> position
    for record in found:
        r = dict(zip(STORE_COLUMNS, record))
        table_key = {**{k: r[k] for k in GROUP_KEYS}, "metric": r["metric"]}
        ident = (*table_key.values(), r["by_defect"])
        if ident not in tables:
            tables[ident] = IntervalTable({k: str(table_key[k]) for k in TABLE_KEYS}, [], [], {},
                                          bool(r["by_defect"]), n_resamples, confidence, [])
            order[ident] = {"rows": {}, "columns": {}, "references": {}}
        order[ident]["rows"][r["row"]] = r["row_index"]
        order[ident]["columns"][r["column"]] = r["column_index"]
        if r["reference"]:
            order[ident]["references"][r["column"]] = r["column_index"]
        tables[ident].cells[(r["row"], r["column"])] = Cell(
            r["value"], r["ci_low"], r["ci_high"], np.nan if r["seed_std"] is None else r["seed_std"], r["n_seeds"],
            np.frombuffer(r["draws"], dtype=np.float64))
    for ident, table in tables.items():
        for name, positions in order[ident].items():
            setattr(table, name, sorted(positions, key=positions.get))
    return list(tables.values())


def run_intervals(run: Run | Path, n_resamples: int = RESAMPLES, seed: int = 0,
                  confidence: float = CONFIDENCE) -> list[IntervalTable]:
    """The run's interval tables: those the `Run` holds for these settings already, else read
    from its results store when stored for the current jobs and these settings, else computed
    (`interval_tables`) and stored; kept in `run.intervals`."""
    run = Run.load(run)
    setting = (n_resamples, seed, confidence)
    if setting not in run.intervals:
        tables = stored_intervals(run, n_resamples, seed, confidence)
        if tables is None:
            tables = interval_tables(run, n_resamples, seed, confidence)
            if tables:
                store_intervals(run, tables, n_resamples, seed, confidence)
        run.intervals[setting] = tables
    return run.intervals[setting]


def interval_rows(tables: list[IntervalTable]) -> pd.DataFrame:
    """One row per cell: the key, row ("class" or "class/defect"), method column, value, ci_low,
    ci_high, seed_std, n_seeds, resamples, confidence, mark."""
    records = []
    for table in tables:
        for row in table.rows:
            marks = table.marks(row)
            for column in table.columns:
                cell = table.cell(row, column)
                if cell is None:
                    continue
                records.append({**table.key, "row": row, "column": column, "value": cell.value,
                                "ci_low": cell.low, "ci_high": cell.high, "seed_std": cell.seed_std,
                                "n_seeds": cell.n_seeds, "resamples": table.n_resamples,
                                "confidence": table.confidence, "mark": marks.get(column, "")})
    return pd.DataFrame.from_records(records)


def write_interval_rows(run_dir: Path, tables: list[IntervalTable]) -> Path:
    """RUN_DIR/intervals.csv: `interval_rows` of the tables, the store's intervals as a CSV."""
    path = Path(run_dir) / "intervals.csv"
    with atomic_write(path) as handle:
        handle.write(interval_rows(tables).to_csv(index=False))
    return path
