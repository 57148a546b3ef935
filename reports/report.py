"""The one report pipeline: everything `run`, `report`, `compare` and `figures` write about a
run goes through `write_report`, over a `Run` loaded once (results, predictions, intervals).

The tables (CSV, LaTeX, RUN_DIR/intervals.csv) and report.html are written together, the page
showing exactly the tables written, so they never disagree (e.g. after `report --ci halfwidth`);
the figures are drawn once, saved and embedded; `compare`'s matrices are saved beside the tables.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from xadbench.defaults import CMAP, RESAMPLES
from xadbench.errors import XadError
from xadbench.reports.compare import Matrix, check_metric, compare_matrices, write_matrices
from xadbench.reports.figures import Drawn, check_options, render_figures, save_drawn
from xadbench.reports.html import write_html
from xadbench.reports.intervals import IntervalTable, run_intervals, write_interval_rows
from xadbench.reports.run import Run
from xadbench.reports.table_formats import write_tables
from xadbench.reports.tables import ResultTable, build_tables, check_compare, check_style

#: How tables show the bootstrap interval, or "off": no bootstrap, nothing marked.
CI_CHOICES = ("interval", "halfwidth", "off")


@dataclass(frozen=True)
class FigureOptions:
    """How heatmap grids are drawn. norm: "local" (each map against itself), "global" (against the
    label-balanced test set) or "auto" (appendix C's choice per data set); eta: the quantile η
    (default per appendix C); blur: the shared blur policy, "gaussian" or "none"; samples:
    columns per block; cmap: the heatmaps' matplotlib colour map."""

    norm: str = "auto"
    eta: float | None = None
    blur: str = "gaussian"
    samples: int = 6
    cmap: str = CMAP


@dataclass
class Report:
    """What `write_report` wrote: the tables (and their files, intervals.csv and compare's
    matrices included), the figure files, the page, the matrices and the intervals used."""

    tables: list[ResultTable] = field(default_factory=list)
    table_paths: list[Path] = field(default_factory=list)
    figure_paths: list[Path] = field(default_factory=list)
    page: Path | None = None
    matrices: list[Matrix] = field(default_factory=list)
    intervals: list[IntervalTable] = field(default_factory=list)


def write_report(run: Run | Path, *, tables: bool = True, figures: bool = True, compare: str | None = None,
                 ci: str = "interval", n_resamples: int = RESAMPLES, seed: int = 0,
                 figure_options: FigureOptions = FigureOptions(), metric: str | None = None) -> Report:
    """Write a run's report into its folder; every option is checked before anything is written.

    tables: the tables as CSV and LaTeX (RUN_DIR/tables), RUN_DIR/intervals.csv and
    RUN_DIR/report.html with the same tables and the figures embedded; figures: the figures saved
    to RUN_DIR/figures (drawn once for both); compare: "paper" adds the FCDD paper's numbers as
    columns; ci: "interval", "halfwidth" or "off" (no bootstrap); n_resamples, seed: the
    bootstrap's; metric: also `compare`'s matrices of paired differences of this metric, saved
    as RUN_DIR/tables/compare_*.csv and .tex.
    """
    check_compare(compare)
    check_style(ci)
    if metric is not None:
        check_metric(metric)
    check_options(figure_options.norm, figure_options.eta, figure_options.blur, figure_options.samples,
                  figure_options.cmap)
    run = Run.load(run)
    report = Report(intervals=run_intervals(run, n_resamples, seed) if ci != "off" else [])
    drawn, notes = _drawn(run, report.intervals, figure_options, n_resamples, seed, strict=not tables) \
        if tables or figures else ([], [])
    if figures:
        report.figure_paths = save_drawn(run.path, drawn)
    if tables:
        report.tables = build_tables(run.results, compare, report.intervals, ci)
        report.table_paths = write_tables(run.path, report.tables)
        if report.intervals:
            report.table_paths.append(write_interval_rows(run.path, report.intervals))
        report.page = write_html(run, report.tables, drawn, notes)
    if metric is not None:
        report.matrices = compare_matrices(run, metric, n_resamples, seed)
        report.table_paths += write_matrices(run, report.matrices)
    return report


def _drawn(run: Run, intervals: list[IntervalTable], options: FigureOptions, n_resamples: int, seed: int,
           strict: bool) -> tuple[list[Drawn], list[str]]:
    """The run's figures and the warnings drawing them gave (for the page). Without predictions:
    XadError when `strict` (figures only), else no figures and the reason as a note (a run
    without predictions still gets its tables and page)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            drawn = list(render_figures(run, options.norm, options.eta, options.blur, options.samples, options.cmap,
                                        intervals or None, n_resamples, seed))
        except XadError as exc:
            if strict:
                raise
            return [], [str(exc)]
    for warning in caught:  # shown as well as noted on the page
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    return drawn, [str(w.message) for w in caught]
