"""Terminal output of a run: rich progress bars (jobs and epochs) and a summary table."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import (
    BarColumn, DownloadColumn, MofNCompleteColumn, Progress as RichBar, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn, TransferSpeedColumn,
)
from rich.table import Table

from xadbench.cli.errors import one_line
from xadbench.files import Owner
from xadbench.runner import JobSpec, Progress
from xadbench.terminal import literal, stdout_console

console = Console(stderr=True)


class RichProgress(Progress):
    """One bar for the grid of jobs (with how many run and how many failed), one for the epochs
    of the running job (shown only where the job runs in this process)."""

    def __enter__(self) -> "RichProgress":
        self.bar = RichBar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.bar.__enter__()
        self.jobs = self.bar.add_task("jobs", total=None, info="")
        self.epochs = self.bar.add_task("epochs", total=None, info="", visible=False)
        self.running: dict[str, JobSpec] = {}
        self.failed = 0
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def describe(self, spec: JobSpec) -> str:
        """data set/class method, its OE size and data transform where it has them, seed; as
        rich markup showing the names literally (no markup, control characters escaped)."""
        oe = f" OE {'all' if spec.oe_limit is None else spec.oe_limit}" if spec.oe else ""
        transform = f" ({spec.transform.label})" if spec.transform is not None else ""
        return literal(f"{Path(spec.dataset).name}/{spec.class_name} {spec.method}{oe}{transform} seed {spec.seed}")

    def show_counts(self) -> None:
        latest = f" · {self.describe(next(reversed(self.running.values())))}" if self.running else ""
        self.bar.update(self.jobs, info=f"{len(self.running)} running, {self.failed} failed{latest}")

    def job_started(self, index: int, total: int, spec: JobSpec) -> None:
        self.running[spec.job_id] = spec
        self.bar.update(self.jobs, total=total)
        self.bar.reset(self.epochs, total=None, visible=False, info="")
        self.show_counts()

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        self.bar.update(self.epochs, total=epochs, completed=epoch, visible=True, info=f"loss {loss:.4f}")

    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None:
        self.bar.advance(self.jobs)
        self.running.pop(spec.job_id, None)
        self.show_counts()
        if skipped:
            console.print(f"skip  {self.describe(spec)}: already in results")
        else:
            values = ", ".join(f"{r['metric']}[{r['blur']}]={r['value']:.3f}" for r in rows)
            fit = rows[0]["fit_s"] if rows else float("nan")
            console.print(f"done  {self.describe(spec)} ({fit:.0f}s fit): {literal(values)}")

    def job_waiting(self, spec: JobSpec, owner: Owner) -> None:
        console.print(f"wait  {self.describe(spec)}: {owner} runs it")

    def job_failed(self, spec: JobSpec, message: str) -> None:
        self.bar.advance(self.jobs)
        self.running.pop(spec.job_id, None)
        self.failed += 1
        self.show_counts()
        console.print(f"FAIL  {self.describe(spec)} (job {spec.job_id}): {literal(one_line(message))}")


def download_bars() -> RichBar:
    """The display of `xadbench.download`'s progress: one bar per archive with its bytes, speed
    and time left."""
    return RichBar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn(), console=console)


def print_summary(results: pd.DataFrame) -> None:
    """Mean over classes and seeds per metric × blur (rows) and method (columns, in run order)."""
    if results.empty:
        return
    order = list(dict.fromkeys(results["method"]))
    summary = results.groupby(["protocol", "blur", "metric", "method"], sort=False)["value"].mean().unstack("method")
    summary = summary[[m for m in order if m in summary.columns]]
    table = Table(title="mean over classes and seeds (--no-report: no bootstrap intervals; `xadbench report` adds them)")
    for column in [*summary.index.names, *summary.columns]:
        table.add_column(str(column))
    for index, row in summary.iterrows():
        table.add_row(*map(str, index), *(f"{v:.3f}" if pd.notna(v) else "" for v in row))
    stdout_console().print(table)
