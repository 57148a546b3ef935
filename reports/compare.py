"""Pairwise comparisons of a run's methods: the matrix of paired bootstrap differences
(`intervals.IntervalTable.difference`) and, for detection AUC, DeLong's test
(`metrics.delong`) on each seed's predictions as a cross-check."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.table import Table as RichTable

from xadbench.errors import XadError
from xadbench.metrics.delong import delong_test
from xadbench.metrics.registry import list_metrics
from xadbench.reports.intervals import _load_jobs, run_intervals
from xadbench.reports.table_formats import DIGITS
from xadbench.reports.tables import load_results


def check_metric(metric: str) -> None:
    if metric not in list_metrics(headline=True):
        raise XadError(f"--metric {metric!r} is unknown; use one of {', '.join(list_metrics(headline=True))}")


def compare_tables(run_dir: Path, metric: str, n_resamples: int, seed: int) -> list[RichTable]:
    """One matrix per (protocol, preset, blur, row): cell (A, B) = A − B [low, high], from the
    run's stored intervals (computed and stored when missing or stale)."""
    check_metric(metric)
    tables = [t for t in run_intervals(run_dir, n_resamples, seed) if t.key["metric"] == metric and not t.by_defect]
    if not tables:
        raise XadError(f"{run_dir}: no predictions support {metric} (pixel metrics need masks)")
    matrices = []
    for table in tables:
        for row in table.rows:
            columns = [c for c in table.columns if table.cell(row, c) is not None]
            if len(columns) < 2:
                continue
            key = table.key
            matrix = RichTable(title=f"{metric}: {row} ({Path(key['dataset']).name}, {key['protocol']}, preset "
                                     f"{key['preset']}, blur {key['blur']}); row − column, paired "
                                     f"{table.confidence:.0%} bootstrap interval, * excludes 0")
            matrix.add_column("")
            for column in columns:
                matrix.add_column(column, justify="right")
            for a in columns:
                cells = []
                for b in columns:
                    if a == b:
                        cells.append(f"{table.cell(row, a).value:.{DIGITS}f}")
                        continue
                    diff, low, high = table.difference(row, a, b)
                    star = " *" if low > 0 or high < 0 else ""
                    cells.append(f"{diff:+.{DIGITS}f} [{low:+.{DIGITS}f}, {high:+.{DIGITS}f}]{star}")
                matrix.add_row(a, *cells)
            matrices.append(matrix)
    return matrices


def delong_rows(run_dir: Path) -> RichTable:
    """DeLong's test of every pair of methods on the same seed's test images, per class."""
    run_dir = Path(run_dir)
    jobs = load_results(run_dir).drop_duplicates("job_id")
    table = RichTable(title="image_auc: DeLong's test (DeLong et al. 1988), row − column per seed, "
                            "95 % normal interval and two-sided p")
    for name in ("protocol", "preset", "class", "seed", "A", "B", "A − B [low, high]", "p"):
        table.add_column(name)
    for (protocol, preset, class_name, seed), group in jobs.groupby(["protocol", "preset", "class", "seed"], sort=False):
        predictions = _load_jobs(run_dir, group)
        labelled = list(zip(group["column"], group["job_id"]))
        for i, (a, job_a) in enumerate(labelled):
            for b, job_b in labelled[i + 1:]:
                pa, pb = predictions[job_a], predictions[job_b]
                if not np.array_equal(pa["key"], pb["key"]) or len(set(pa["label"])) < 2:
                    continue
                result = delong_test(pa["score"], pb["score"], pa["label"])
                table.add_row(protocol, preset, class_name, str(seed), a, b,
                              f"{result.difference:+.{DIGITS}f} [{result.low:+.{DIGITS}f}, {result.high:+.{DIGITS}f}]",
                              f"{result.p_value:.3g}")
    return table
