"""Pairwise comparisons of a run's methods: the matrix of paired bootstrap differences
(`intervals.IntervalTable.difference`) and, for detection AUC, DeLong's test
(`metrics.delong`) on each seed's predictions as a cross-check. The matrices are saved as CSV
and LaTeX beside the run's tables (`write_matrices`)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table as RichTable

from xadbench.errors import XadError
from xadbench.files import atomic_write, safe_name
from xadbench.metrics.delong import delong_test
from xadbench.metrics.registry import list_metrics
from xadbench.reports.intervals import run_intervals
from xadbench.reports.run import Run
from xadbench.reports.table_formats import DIGITS, tex_escape


def check_metric(metric: str) -> None:
    """One line naming --metric when it is not a headline metric of the metric registry."""
    known = list_metrics(headline=True)
    if metric not in known:
        close = difflib.get_close_matches(metric, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise XadError(f"--metric {metric!r} is unknown; {hint}use one of {', '.join(known)}")


@dataclass
class Matrix:
    """One row's paired differences: `cells` (methods × methods) as shown, the value on the
    diagonal and "A − B [low, high]" (* where the interval excludes 0) elsewhere; `differences`
    the numbers, one row per ordered pair (a, b, difference, low, high)."""

    title: str
    stem: str
    cells: pd.DataFrame
    differences: pd.DataFrame

    def rich(self) -> RichTable:
        table = RichTable(title=self.title)
        table.add_column("")
        for column in self.cells.columns:
            table.add_column(column, justify="right")
        for a, row in self.cells.iterrows():
            table.add_row(a, *row)
        return table


def compare_matrices(run: Run | Path, metric: str, n_resamples: int, seed: int) -> list[Matrix]:
    """One matrix per (protocol, preset, blur, row): cell (A, B) = A − B [low, high], from the
    run's intervals (stored, or computed and stored when missing or stale); XadError when no row
    has two methods. Reference maps are labelled "(reference)": the floor the methods are read
    against, never a competitor (the tables never mark them best)."""
    check_metric(metric)
    run = Run.load(run)
    tables = [t for t in run_intervals(run, n_resamples, seed) if t.key["metric"] == metric and not t.by_defect]
    if not tables:
        raise XadError(f"{run.path}: no predictions support {metric} (pixel metrics need masks)")
    matrices = []
    for table in tables:
        for row in table.rows:
            columns = [c for c in table.columns if table.cell(row, c) is not None]
            if len(columns) < 2:
                continue
            key = table.key
            title = (f"{metric}: {row} ({Path(key['dataset']).name}, {key['protocol']}, preset {key['preset']}, "
                     f"blur {key['blur']}); row − column, paired {table.confidence:.0%} bootstrap interval, "
                     "* excludes 0" + ("; (reference): a trivial map, the floor, not a competitor"
                                       if set(columns) & set(table.references) else ""))
            cells = pd.DataFrame("", index=columns, columns=columns)
            differences = []
            for a in columns:
                for b in columns:
                    if a == b:
                        cells.at[a, b] = f"{table.cell(row, a).value:.{DIGITS}f}"
                        continue
                    diff, low, high = table.difference(row, a, b)
                    star = " *" if low > 0 or high < 0 else ""
                    cells.at[a, b] = f"{diff:+.{DIGITS}f} [{low:+.{DIGITS}f}, {high:+.{DIGITS}f}]{star}"
                    differences.append({"a": a, "b": b, "difference": diff, "low": low, "high": high,
                                        "excludes_0": bool(star)})
            stem = safe_name(f"compare_{table.slug.removesuffix('_ci')}_{row}")
            cells = cells.rename(lambda c: f"{c} (reference)" if c in table.references else c, axis="index")
            cells = cells.rename(lambda c: f"{c} (reference)" if c in table.references else c, axis="columns")
            matrices.append(Matrix(title, stem, cells, pd.DataFrame(differences)))
    if not matrices:
        methods = sorted({c for t in tables for c in t.columns})
        raise XadError(f"{run.path}: nothing to compare: {metric} has one method per class and setting "
                       f"({', '.join(methods)}); compare needs two or more, e.g. a run without --no-references")
    return matrices


def write_matrices(run: Run, matrices: list[Matrix]) -> list[Path]:
    """Each matrix as RUN_DIR/tables/<stem>.csv (the paired differences as numbers) and .tex (the
    matrix as shown, caption its title); returns the paths written."""
    paths = []
    for matrix in matrices:
        # pdflatex knows neither U+2212 (the minus of the terminal view) nor bare underscores.
        cells = matrix.cells.apply(lambda column: column.str.replace("−", "-"))
        caption = tex_escape(matrix.title.replace("−", "-")).replace("*", r"$\ast$")
        latex = (cells.style.format(escape="latex").format_index(escape="latex", axis=0)
                 .format_index(escape="latex", axis=1).to_latex(hrules=True, caption=caption))
        for suffix, text in ((".csv", matrix.differences.to_csv(index=False)), (".tex", latex)):
            path = run.path / "tables" / f"{matrix.stem}{suffix}"
            with atomic_write(path) as handle:
                handle.write(text)
            paths.append(path)
    return paths


def delong_rows(run: Run | Path) -> RichTable:
    """DeLong's test of every pair of methods on the same seed's test images, per class."""
    run = Run.load(run)
    jobs = run.results.drop_duplicates("job_id")
    table = RichTable(title="image_auc: DeLong's test (DeLong et al. 1988), row − column per seed, "
                            "95 % normal interval and two-sided p")
    for name in ("protocol", "preset", "class", "seed", "A", "B", "A − B [low, high]", "p"):
        table.add_column(name)
    for (protocol, preset, class_name, seed), group in jobs.groupby(["protocol", "preset", "class", "seed"], sort=False):
        labelled = list(zip(group["column"], group["job_id"]))
        for i, (a, job_a) in enumerate(labelled):
            for b, job_b in labelled[i + 1:]:
                pa, pb = run.predictions(job_a), run.predictions(job_b)
                if not np.array_equal(pa["key"], pb["key"]) or len(set(pa["label"])) < 2:
                    continue
                result = delong_test(pa["score"], pb["score"], pa["label"])
                table.add_row(protocol, preset, class_name, str(seed), a, b,
                              f"{result.difference:+.{DIGITS}f} [{result.low:+.{DIGITS}f}, {result.high:+.{DIGITS}f}]",
                              f"{result.p_value:.3g}")
    return table
