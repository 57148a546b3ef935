"""The `xadbench` command line, the only package that imports typer, rich's progress bars and
`xadbench.reports`: `commands` (the main app: run, evaluate, check, methods, datasets, data,
weights), `report_commands` (report, compare, figures), `study_commands` and
`sensitivity_commands` (`xadbench study ...`), `errors` (one line per failure or warning),
`options` (the shared options' declarations) and `console` (a run's progress bars and summary).
"""
from xadbench.cli.commands import app, main

__all__ = ["app", "main"]
