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
"tied" group.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from xadbench.errors import XadError
from xadbench.evaluator import IMAGE_AUC, PER_IMAGE_PIXEL_AUC, PIXEL_AUC
from xadbench.metrics.aupro import AUPRO
from xadbench.metrics.bootstrap import CONFIDENCE, RESAMPLES, TestSet, percentile_interval, stratified_weights
from xadbench.reports.tables import TABLE_KEYS, load_results
from xadbench.runner import load_predictions, postprocess

METRICS = (IMAGE_AUC, PIXEL_AUC, PER_IMAGE_PIXEL_AUC, AUPRO)
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
        present = [c for c in self.columns if self.cell(row, c) is not None]
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


def _load_jobs(run_dir: Path, jobs: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    loaded = {}
    for job_id in jobs["job_id"].unique():
        path = run_dir / "predictions" / f"{job_id}.npz"
        if not path.is_file():
            raise XadError(f"{path}: predictions of job {job_id} are missing; intervals are computed from them "
                           "(rerun the job, or use --ci off)")
        loaded[job_id] = load_predictions(path)
    return loaded


def _test_set(p: dict[str, np.ndarray], blur: str, metric_needs_maps: bool) -> TestSet:
    if not metric_needs_maps or "mask" not in p:
        return TestSet(p["score"], p["label"])
    maps = postprocess(p["anomaly_map"].astype(np.float32), blur, bool(p["method_smooth"]),
                       int(p["blur_size"]), float(p["blur_sigma"])).astype(np.float16)
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
    tables = []
    for group_key, group in results.groupby(list(GROUP_KEYS), sort=False):
        key = dict(zip(GROUP_KEYS, group_key))
        jobs = group.drop_duplicates("job_id")
        columns = list(dict.fromkeys(jobs["column"]))
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
            tables.append(IntervalTable({k: str(table_key[k]) for k in TABLE_KEYS}, rows, columns, cells,
                                        False, n_resamples, confidence))
            if defect_rows[metric]:
                tables.append(IntervalTable({k: str(table_key[k]) for k in TABLE_KEYS}, defect_rows[metric],
                                            columns, cells, True, n_resamples, confidence))
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
