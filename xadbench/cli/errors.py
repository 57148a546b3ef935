"""One line per failure, one line per warning: the Typer group every `xadbench` command runs in.

Every failure becomes one line on stderr and a non-zero exit, in one place (`OneLineErrors`):
domain and usage errors, file-system errors, a plugin that raises, Ctrl-C (exit 130), and any
other exception. Warnings print as one line each, each text once per command.
"""
from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from xadbench.cli.options import choice_hint
from xadbench.errors import XadError
from xadbench.terminal import printable

#: Set this environment variable to get the traceback of an unexpected error instead of one line.
TRACEBACK_VARIABLE = "XADBENCH_TRACEBACK"
#: Exit status after Ctrl-C, the shell's convention (128 + SIGINT).
INTERRUPTED_EXIT = 130


class Failure(Exception):
    """An exception already turned into its one line, with the exit status to use."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


#: What a Ctrl-C leaves behind; a command that writes a run folder sets it (see `run`).
interrupt_note = {"text": "nothing was written"}


def one_line(text: object) -> str:
    """`text` with every run of white space (newlines included) as one space and the other
    control characters escaped (`printable`)."""
    return printable(" ".join(str(text).split()))


def describe_exception(exc: BaseException) -> str:
    """One line for an exception the commands do not turn into an XadError themselves."""
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}" if exc.filename else f"permission denied ({one_line(exc)})"
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"no such file or folder: {exc.filename}"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{one_line(exc.strerror or exc)}"
    return (f"unexpected {type(exc).__name__}: {one_line(exc)} (a bug in xadbench or a plugin; "
            f"set {TRACEBACK_VARIABLE}=1 for the traceback)")


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """warnings.showwarning for the CLI: "warning: <text>" on one line, each text once."""
    text = one_line(message)
    if text in _shown_warnings:
        return
    _shown_warnings.add(text)
    kind = "" if category is UserWarning else f"{category.__name__}: "
    typer.echo(f"warning: {kind}{text}", err=True)


_shown_warnings: set[str] = set()


def _stop_writing_to_closed_pipe() -> None:
    """The reader of standard output is gone (`xadbench methods list | head -2`): end quietly,
    as other command-line tools do; what is still buffered goes to /dev/null instead of raising
    BrokenPipeError again at exit."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # standard output is not a file descriptor (e.g. a test's buffer)
        pass


class OneLineErrors(TyperGroup):
    def invoke(self, ctx: typer.Context) -> Any:
        """Runs the command; every exception it raises leaves here as a `Failure`, except the
        ones Typer uses for usage errors, exits and aborts."""
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort, Failure):
            raise
        except BrokenPipeError:  # before click's own handling, which exits with status 1
            _stop_writing_to_closed_pipe()
            raise typer.Exit(0) from None
        except XadError as exc:
            raise Failure(one_line(exc)) from exc
        except KeyboardInterrupt:
            raise Failure(f"interrupted: {interrupt_note['text']}", INTERRUPTED_EXIT) from None
        except Exception as exc:
            if os.environ.get(TRACEBACK_VARIABLE):
                raise
            raise Failure(describe_exception(exc)) from exc

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra: Any) -> Any:
        _shown_warnings.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # the default filters, with a fresh "seen" registry
            warnings.showwarning = show_warning
            try:
                result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
                sys.stdout.flush()  # so that a closed pipe shows here, not at the interpreter's exit
            except BrokenPipeError:
                _stop_writing_to_closed_pipe()
                sys.exit(0)
            except typer.Abort:
                typer.echo("error: aborted", err=True)
                sys.exit(1)
            except Failure as exc:
                typer.echo(f"error: {printable(exc)}", err=True)
                sys.exit(exc.exit_code)
            except typer.TyperException as exc:
                typer.echo(f"error: {choice_hint(one_line(exc.format_message()))}", err=True)
                sys.exit(1)
        if standalone_mode:
            sys.exit(result if isinstance(result, int) else 0)
        return result
