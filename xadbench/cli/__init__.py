"""The `xadbench` command line, the only package that imports typer, rich's progress bars and
`xadbench.reports`: `commands` (the main app: run, evaluate, check, methods, datasets, data,
weights), `report_commands` (report, compare, figures), `study_commands` and
`sensitivity_commands` (`xadbench study ...`) and `errors` (one line per failure or warning).
"""
from xadbench.cli.commands import app, main

__all__ = ["app", "main"]
