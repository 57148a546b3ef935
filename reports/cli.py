"""The `report` and `figures` commands: plain Typer-annotated functions over the library's
`write_report` and `write_figures`. The main app registers them with `app.command(name)(function)`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from xadbench.reports.figures import CMAP, write_figures
from xadbench.reports.html import write_html
from xadbench.reports.tables import report_tables, summary_table, write_report

RunDir = Annotated[Path, typer.Argument(help="Run folder written by `xadbench run` (holds results.csv).",
                                        show_default=False)]


def report(
    run_dir: RunDir,
    compare: Annotated[str | None, typer.Option(
        help="'paper': add the FCDD paper's published numbers (Tables 2, 6, 7, 8) as extra columns.")] = None,
    html: Annotated[bool, typer.Option(
        "--html/--no-html", help="Also write RUN_DIR/report.html: one self-contained page with provenance, "
                                 "tables (the paper's numbers beside ours) and figures.")] = False,
) -> None:
    """Write the run's class × method tables (mean ± std over seeds, Mean and σ rows) as CSV and
    LaTeX to RUN_DIR/tables and print a summary.

    Example: xadbench report runs/mvtec-unsupervised-cpu --compare paper --html
    """
    paths = write_report(run_dir, compare)
    tables = report_tables(run_dir, compare)
    Console().print(summary_table(tables))
    if compare and not any(len(t.paper.columns) for t in tables):
        typer.echo("note: the paper publishes no numbers for this run's data sets, methods and metrics "
                   "(it has MVTec-AD pixel AUC and Fashion-MNIST, CIFAR-10, ImageNet-30 detection AUC "
                   "for fcdd and ae)", err=True)
    for note in dict.fromkeys(n for t in tables for n in t.setup_notes):
        typer.echo(f"note: beside the paper's numbers: {note}", err=True)
    typer.echo(f"tables: {Path(run_dir) / 'tables'} ({len(paths)} files)")
    if html:
        page = write_html(run_dir)
        typer.echo(f"report: {page.resolve()}")


def figures(
    run_dir: RunDir,
    norm: Annotated[str, typer.Option(
        help="Heatmap normalisation reference: auto (the paper's choice per data set), local (each map "
             "against itself) or global (against the label-balanced test set).")] = "auto",
    eta: Annotated[float | None, typer.Option(
        help="Quantile η of the normalisation; default per the paper's appendix C (MVTec-AD 0.97).",
        show_default=False)] = None,
    blur: Annotated[str, typer.Option(
        help="gaussian: blur the baselines' maps with FCDD's kernel (the shared policy); none: raw maps.")] = "gaussian",
    samples: Annotated[int, typer.Option(help="Columns per block (nominal, anomalous).")] = 6,
    cmap: Annotated[str, typer.Option(help="Matplotlib colour map of the heatmaps (the paper's: jet).")] = CMAP,
) -> None:
    """Draw heatmap grids (PNG and PDF) and ROC curves (PNG, PDF and SVG) of a run into
    RUN_DIR/figures from its saved predictions, without re-training. File names carry the norm,
    η, blur and colour map, so figures drawn with other options do not overwrite them.

    Example: xadbench figures runs/mvtec-unsupervised-cpu --norm local --eta 0.97
    """
    paths = write_figures(run_dir, norm=norm, eta=eta, blur=blur, samples=samples, cmap=cmap)
    typer.echo(f"figures: {Path(run_dir) / 'figures'} ({len(paths)} files)")
