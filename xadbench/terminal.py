"""Where tables are printed: standard output through rich."""
from __future__ import annotations

from rich.console import Console

#: rich lays a table out for 80 columns when standard output is a file or a pipe, cutting cells
#: of intervals to "…"; a log gets this width instead.
LOG_WIDTH = 200


def stdout_console() -> Console:
    """A rich console on standard output: the terminal's width, or LOG_WIDTH when it is not a
    terminal."""
    console = Console()
    if not console.is_terminal:
        console.width = LOG_WIDTH
    return console
