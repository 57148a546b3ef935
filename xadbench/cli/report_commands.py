"""The `report`, `compare` and `figures` commands: plain Typer-annotated functions over the
the library's one report pipeline (`reports.report.write_report`). The main app
registers them with `app.command(name)(function)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from xadbench.defaults import CMAP, RESAMPLES
from xadbench.errors import XadError
from xadbench.terminal import stdout_console

RunDir = Annotated[Path, typer.Argument(help="Run folder written by `xadbench run` (holds results.csv).",
                                        show_default=False)]


Resamples = Annotated[int, typer.Option(help="Bootstrap resamples of the test images.")]
CiSeed = Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")]


def _check_resamples(resamples: int) -> None:
    if resamples < 100:
        raise XadError(f"--resamples {resamples}: use at least 100 (default {RESAMPLES}) for a 95 % percentile interval")


def report(
    run_dir: RunDir,
    compare: Annotated[str | None, typer.Option(
        help="'paper': add the FCDD paper's published numbers (Tables 2, 6, 7, 8) as extra columns.")] = None,
    ci: Annotated[Literal["interval", "halfwidth", "off"], typer.Option(
        help="How cells show their bootstrap interval (computed from the saved predictions): interval "
             "('value [low, high]'), halfwidth ('value ± half-width') or off (no bootstrap, nothing marked).")] = "interval",
    resamples: Resamples = RESAMPLES,
    ci_seed: CiSeed = 0,
) -> None:
    """Write the run's tables as CSV and LaTeX to RUN_DIR/tables and RUN_DIR/report.html (the
    same tables, with the figures), and print a summary: per class (Mean and σ rows) and per
    defect type, each value with its bootstrap interval and the std over seeds; bold only a
    significantly best method (paired bootstrap), underline a tied group. The intervals are kept
    in the results store (recomputed when the run's predictions change) and exported to
    RUN_DIR/intervals.csv.

    Example: xadbench report runs/mvtec-unsupervised-cpu --compare paper --ci halfwidth
    """
    from xadbench.reports.report import write_report
    from xadbench.reports.table_formats import summary_table

    if ci != "off":
        _check_resamples(resamples)
    done = write_report(run_dir, figures=False, compare=compare, ci=ci, n_resamples=resamples, seed=ci_seed)
    if not done.intervals and ci != "off":
        typer.echo(f"note: no saved predictions in {Path(run_dir) / 'predictions'}, so no bootstrap intervals "
                   "and no method marked best", err=True)
    stdout_console().print(summary_table(done.tables))
    if compare and not any(len(t.paper.columns) for t in done.tables):
        typer.echo("note: the paper publishes no numbers for this run's data sets, methods and metrics "
                   "(it has MVTec-AD pixel AUC and Fashion-MNIST, CIFAR-10, ImageNet-30 detection AUC "
                   "for fcdd and ae)", err=True)
    for note in dict.fromkeys(n for t in done.tables for n in t.setup_notes):
        typer.echo(f"note: beside the paper's numbers: {note}", err=True)
    typer.echo(f"tables: {Path(run_dir) / 'tables'} ({len(done.table_paths)} files)")
    typer.echo(f"report: {done.page.resolve()}")


def compare(
    run_dir: RunDir,
    metric: Annotated[str, typer.Option(
        help="The metric whose paired differences are printed: a headline metric of the metric registry "
             "(the README's Metrics section).")] = "pixel_auc",
    resamples: Resamples = RESAMPLES,
    ci_seed: CiSeed = 0,
) -> None:
    """Print the pairwise matrix of paired bootstrap differences (row method minus column method,
    95 % interval; * where it excludes 0) per class and over the class mean, for every protocol,
    preset and blur policy of the run, and save each as CSV and LaTeX in RUN_DIR/tables
    (compare_*); for image_auc also DeLong's test per seed.

    Example: xadbench compare runs/mvtec-unsupervised-cpu --metric pixel_auc
    """
    from xadbench.reports.compare import check_metric, delong_rows
    from xadbench.reports.report import write_report
    from xadbench.reports.run import Run

    check_metric(metric)
    _check_resamples(resamples)
    run = Run.load(run_dir)
    done = write_report(run, tables=False, figures=False, n_resamples=resamples, seed=ci_seed, metric=metric)
    console = stdout_console()
    for matrix in done.matrices:
        console.print(matrix.rich())
    if metric == "image_auc":
        console.print(delong_rows(run))
    typer.echo(f"matrices: {Path(run_dir) / 'tables'} ({len(done.table_paths)} files)")


def figures(
    run_dir: RunDir,
    norm: Annotated[Literal["auto", "local", "global"], typer.Option(
        help="Heatmap normalisation reference: auto (the paper's choice per data set), local (each map "
             "against itself) or global (against the label-balanced test set).")] = "auto",
    eta: Annotated[float | None, typer.Option(
        help="Quantile η of the normalisation; default per the paper's appendix C (MVTec-AD 0.97).",
        show_default=False)] = None,
    blur: Annotated[Literal["gaussian", "none"], typer.Option(
        help="gaussian: blur the baselines' maps with FCDD's kernel (the shared policy); none: raw maps.")] = "gaussian",
    samples: Annotated[int, typer.Option(help="Columns per block (nominal, anomalous).")] = 6,
    cmap: Annotated[str, typer.Option(help="Matplotlib colour map of the heatmaps (perceptually uniform viridis; the paper's: jet).")] = CMAP,
    resamples: Resamples = RESAMPLES,
    ci_seed: CiSeed = 0,
) -> None:
    """Draw heatmap grids (PNG and PDF) and ROC and PRO curves with bootstrap bands (PNG, PDF and
    SVG) of a run into RUN_DIR/figures from its saved predictions, without re-training. File names carry the norm,
    η, blur and colour map, so figures drawn with other options do not overwrite them.

    Example: xadbench figures runs/mvtec-unsupervised-cpu --norm local --eta 0.97
    """
    from xadbench.reports.report import FigureOptions, write_report

    _check_resamples(resamples)
    done = write_report(run_dir, tables=False, n_resamples=resamples, seed=ci_seed,
                        figure_options=FigureOptions(norm, eta, blur, samples, cmap))
    typer.echo(f"figures: {Path(run_dir) / 'figures'} ({len(done.figure_paths)} files)")
