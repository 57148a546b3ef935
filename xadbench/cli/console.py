"""Terminal output of a run: rich progress bars (jobs and epochs) and a summary table."""
from __future__ import annotations

import datetime
import sys
import time
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
from xadbench.metrics.registry import list_metrics
from xadbench.runner import JobSpec, Progress
from xadbench.terminal import literal, printable, stdout_console

console = Console(stderr=True)
HEADLINE = list_metrics(headline=True)


#: In a log (standard error not a terminal) an epoch line is written at most this often.
EPOCH_LOG_S = 30.0


def clock(seconds: float | None) -> str:
    """h:mm:ss, or "?" when not known yet."""
    return "?" if seconds is None else str(datetime.timedelta(seconds=round(seconds)))


class GridProgress(Progress):
    """What both displays of a run share: the grid's `total` (known from the start, so a resumed
    run counts the jobs it skips), how many finished and failed, the elapsed time and an ETA (the
    mean time of the jobs this process ran, times the jobs left), and the one line per finished
    job with its phase times and headline metrics (the rest is in results.csv)."""

    def __init__(self, total: int):
        self.total = total
        self.finished = self.failed = self.ran = 0
        self.running: dict[str, JobSpec] = {}
        self.started = time.monotonic()

    #: Names and values as this display shows them literally: rich markup (no markup, control
    #: characters escaped) for the bars; a log's plain lines override it.
    quote = staticmethod(literal)

    def describe(self, spec: JobSpec) -> str:
        """data set/class method, its OE size and data transform where it has them, seed (`quote`d)."""
        oe = f" OE {'all' if spec.oe_limit is None else spec.oe_limit}" if spec.oe else ""
        transform = f" ({spec.transform.label})" if spec.transform is not None else ""
        return self.quote(f"{Path(spec.dataset).name}/{spec.class_name} {spec.method}{oe}{transform} seed {spec.seed}")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta(self) -> float | None:
        left = self.total - self.finished
        return 0.0 if left == 0 else (self.elapsed() / self.ran * left if self.ran else None)

    def timing(self) -> str:
        return f"elapsed {clock(self.elapsed())}, ETA {clock(self.eta())}"

    def count(self, spec: JobSpec, ran: bool, failed: bool = False) -> None:
        self.finished += 1
        self.ran += ran
        self.failed += failed
        self.running.pop(spec.job_id, None)

    def finished_line(self, spec: JobSpec, rows: list[dict[str, Any]]) -> str:
        """"done  3/12 mvtec/bottle fcdd seed 0: fit 12s, predict 1s, sanity 38s; pixel_auc=0.951 ..."."""
        first = rows[0] if rows else {}
        phases = [f"{name} {first[key]:.0f}s" for name, key in (("fit", "fit_s"), ("predict", "predict_s"),
                                                               ("sanity", "sanity_s")) if key in first]
        blurs = {r["blur"] for r in rows}
        values = " ".join(f"{r['metric']}{'' if len(blurs) == 1 else '[' + r['blur'] + ']'}={r['value']:.3f}"
                          for r in rows if r["metric"] in HEADLINE and pd.notna(r["value"]))
        return (f"done  {self.finished}/{self.total} {self.describe(spec)}: {', '.join(phases)}; {self.quote(values)} "
                f"({self.timing()})")


class RichProgress(GridProgress):
    """In a terminal: one bar for the grid of jobs (how many run and failed, the ETA, the running
    job and its phase: fit, predict, scoring and sanity checks), one for the epochs of a job that
    trains for more than one epoch (shown only where the job runs in this process)."""

    def __enter__(self) -> "RichProgress":
        self.bar = RichBar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
        self.bar.__enter__()
        self.jobs = self.bar.add_task("jobs", total=self.total, info="")
        self.epochs = self.bar.add_task("epochs", total=None, info="", visible=False)
        self.current = ""
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.__exit__(*exc)

    def show_counts(self) -> None:
        latest = f" · {self.describe(next(reversed(self.running.values())))}" if self.running else ""
        phase = f": {self.current}" if self.running and self.current else ""
        self.bar.update(self.jobs, completed=self.finished,
                        info=f"{len(self.running)} running, {self.failed} failed, ETA {clock(self.eta())}{latest}{phase}")

    def job_started(self, index: int, total: int, spec: JobSpec) -> None:
        self.running[spec.job_id] = spec
        self.current = ""
        self.bar.reset(self.epochs, total=None, visible=False, info="")
        self.show_counts()

    def phase(self, name: str) -> None:
        self.current = name
        if name != "fit":
            self.bar.update(self.epochs, visible=False)
        self.show_counts()

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        self.bar.update(self.epochs, total=epochs, completed=epoch, visible=epochs > 1, info=f"loss {loss:.4f}")

    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None:
        self.count(spec, ran=not skipped)
        self.show_counts()
        if skipped:
            console.print(f"skip  {self.describe(spec)}: already in results")
        else:
            console.print(self.finished_line(spec, rows))

    def job_waiting(self, spec: JobSpec, owner: Owner) -> None:
        console.print(f"wait  {self.describe(spec)}: {owner} runs it")

    def job_failed(self, spec: JobSpec, message: str) -> None:
        self.count(spec, ran=True, failed=True)
        self.show_counts()
        console.print(f"FAIL  {self.describe(spec)} (job {spec.job_id}): {literal(one_line(message))}")


class LogProgress(GridProgress):
    """Where standard error is not a terminal (nohup, a cluster log): plain lines, flushed as they
    are written: one per job start and finish (phase times, headline metrics, elapsed, ETA), one
    per epoch at most every EPOCH_LOG_S seconds."""

    quote = staticmethod(printable)

    def __enter__(self) -> "LogProgress":
        self.last_epoch_line = 0.0
        self.write(f"run   {self.total} jobs")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.write(f"end   {self.finished}/{self.total} jobs, {self.failed} failed, elapsed {clock(self.elapsed())}")

    @staticmethod
    def write(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def job_started(self, index: int, total: int, spec: JobSpec) -> None:
        self.running[spec.job_id] = spec
        self.last_epoch_line = time.monotonic()
        self.write(f"start {self.finished + len(self.running)}/{self.total} {self.describe(spec)} ({self.timing()})")

    def epoch(self, epoch: int, epochs: int, loss: float) -> None:
        if epochs > 1 and time.monotonic() - self.last_epoch_line >= EPOCH_LOG_S:
            self.last_epoch_line = time.monotonic()
            self.write(f"      epoch {epoch}/{epochs} loss {loss:.4f} ({self.timing()})")

    def job_finished(self, spec: JobSpec, rows: list[dict[str, Any]], skipped: bool) -> None:
        self.count(spec, ran=not skipped)
        self.write(f"skip  {self.finished}/{self.total} {self.describe(spec)}: already in results" if skipped
                   else self.finished_line(spec, rows))

    def job_waiting(self, spec: JobSpec, owner: Owner) -> None:
        self.write(f"wait  {self.describe(spec)}: {owner} runs it")

    def job_failed(self, spec: JobSpec, message: str) -> None:
        self.count(spec, ran=True, failed=True)
        self.write(f"FAIL  {self.finished}/{self.total} {self.describe(spec)} (job {spec.job_id}): "
                   f"{printable(one_line(message))} "
                   f"({self.timing()})")


def run_progress(total: int) -> GridProgress:
    """The display of a run of `total` jobs: bars in a terminal, plain lines in a log."""
    return RichProgress(total) if console.is_terminal else LogProgress(total)


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
    classes, seeds = results["class"].nunique(), results["seed"].nunique()
    averaged = (f"mean over {classes} class{'es' if classes > 1 else ''} and {seeds} seed{'s' if seeds > 1 else ''}"
                if classes > 1 or seeds > 1 else f"class {results['class'].iloc[0]}, one seed")
    table = Table(title=f"{averaged} (--no-report: no bootstrap intervals; `xadbench report` adds them)")
    for column in [*summary.index.names, *summary.columns]:
        table.add_column(str(column))
    for index, row in summary.iterrows():
        table.add_row(*map(str, index), *(f"{v:.3f}" if pd.notna(v) else "" for v in row))
    stdout_console().print(table)
