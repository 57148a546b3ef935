"""Where tables are printed: standard output through rich; names shown literally."""
from __future__ import annotations

import unicodedata

from rich.console import Console
from rich.markup import escape

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


def printable(text: object) -> str:
    """`text` with each control character (ESC, BEL, the C1 codes...) written as \\xNN: names
    are data, and a class folder's name must not retitle, recolour or clear the terminal."""
    return "".join(f"\\x{ord(c):02x}" if unicodedata.category(c) == "Cc" else c for c in str(text))


def literal(text: object) -> str:
    """`text` as rich markup that shows it as it is: control characters escaped (`printable`),
    and brackets that would read as markup ([bold]) escaped."""
    return escape(printable(text))
