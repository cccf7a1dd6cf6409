"""What every command shares: the consoles and the one boundary where faults become one line.

:func:`user_errors` wraps each command. Whatever goes wrong below it ends as ``error: ...`` on one
line of stderr with exit code 2, never a traceback:

- :class:`CovsegError`: bad input, with the message the code wrote;
- :class:`OSError`: disk full, read-only folder, permission denied, a folder where a file was
  expected, ... named with the path the operating system gave;
- :class:`MemoryError`: says so, with the advice to use smaller images or batches.

Every hand-written option and argument is declared with :func:`option` and :func:`argument`, so
that all commands' ``--help`` reads like the options generated from the TrainConfig fields
(:mod:`covseg.commands._settings`): an upper-case metavar (NAME, PATH, FILE, DIR, KEY=VALUE,
INTEGER, NUMBER), bounds and ``(default: x)`` at the end of the help text; :func:`one_help_style`
makes Typer's own parts (the ``--help`` flag, argument types, usage line) follow it.

SIGTERM (what Slurm and Kubernetes send before killing a job at its time limit) is turned into
``KeyboardInterrupt`` by :func:`handle_termination`, so it stops a command exactly like Ctrl-C.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any, ParamSpec, TypeVar

import typer
from rich.markup import escape
from typer.core import TyperArgument

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error
from covseg.terminal import console, error_console, join, styled

__all__ = ["EXIT_USER_ERROR", "argument", "console", "error_console", "error_line", "fail", "one_help_style",
           "option", "user_errors", "warn", "warn_mixed_onnxruntime"]

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2


def error_line(message: str) -> None:
    """Print ``error: message`` on one line to stderr (a command that goes on, e.g. to the next case)."""
    error_console.print(join(styled("error:", "bold red"), " ", message), soft_wrap=True)


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on one line to stderr and return the exit to raise."""
    error_line(message)
    return typer.Exit(EXIT_USER_ERROR)


def warn(message: str) -> None:
    """Print ``warning: message`` on one line to stderr."""
    error_console.print(join(styled("warning:", "bold yellow"), " ", message), soft_wrap=True)


def renamed_option(old: str, new: str, command: str, new_given: bool) -> None:
    """An option given under its old name ``old``: refuse it beside ``new`` (the same option twice),
    else warn once that ``new`` replaces it. Every rename of the CLI says it in these words."""
    if new_given:
        raise CovsegError(f"{old} and {new} are the same option ({old} is its old name); give {new} only")
    warn(f"{old} is deprecated in `covseg {command}`: use {new}")


def warn_mixed_onnxruntime() -> None:
    """Warn, on one line, when both onnxruntime builds are installed (:mod:`covseg.onnx.install`)."""
    from covseg.onnx.install import mixed_install_message

    message = mixed_install_message()
    if message is not None:
        warn(message)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn the faults a user can fix into one line on stderr and exit code 2 (see the module doc)."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CovsegError as error:
            raise fail(str(error)) from None
        except OSError as error:
            raise fail(describe_os_error(error, action="use")) from None
        except MemoryError:
            raise fail("out of memory; use a smaller --image-size or --batch-size") from None

    return wrapper


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def help_with_defaults(help: str, *, low: float | None = None, high: float | None = None,
                       default_text: str | None = None) -> str:
    """``Slices per run. (1..4096) (default: 8)``: the help, then the bounds, then the default.

    Square brackets are escaped: Typer reads help as rich markup, and ``covseg[dicom]`` would lose
    its ``[dicom]``."""
    parts = [escape(help)]
    if low is not None and high is not None:
        parts.append(f"({_number(low)}..{_number(high)})")
    elif low is not None or high is not None:
        parts.append(f"(>= {_number(low)})" if low is not None else f"(<= {_number(high)})")
    if default_text is not None:
        parts.append(f"(default: {default_text})")
    return " ".join(parts)


def option(*names: str, help: str, metavar: str = "", default_text: str | None = None,
           min: float | None = None, max: float | None = None, **kwargs: Any) -> Any:
    """A Typer option in covseg's help style: ``option("--batch-size", metavar="INTEGER", min=1,
    default_text="8", help="Slices per forward pass.")`` shows ``--batch-size INTEGER  Slices per
    forward pass. (>= 1) (default: 8)``.

    ``metavar`` is left empty for a flag (Typer would show ``<bool>``); ``min``/``max`` are checked
    by Typer as before and written into the help here; ``default_text`` is the default as the user
    reads it (Typer's own ``[default: ...]`` is off). Other keywords go to :func:`typer.Option`.
    """
    return typer.Option(*names, help=help_with_defaults(help, low=min, high=max, default_text=default_text),
                        metavar=metavar, show_default=False, min=min, max=max, **kwargs)


def argument(metavar: str, *, help: str, **kwargs: Any) -> Any:
    """A Typer argument in covseg's help style: shown by its upper-case ``metavar`` (``TARGET``) in
    the usage line and the table, without Typer's ``<str>`` type."""
    return typer.Argument(metavar=metavar, help=escape(help), show_default=False, **kwargs)


def one_help_style(command: Any) -> None:
    """Make Typer's own parts of ``command``'s help (and its subcommands') follow :func:`option`:
    the ``--help`` flag without ``<bool>``, arguments without ``<str>`` and with click's usage
    (``TARGET``, ``[PATH]``, ``INPUTS...``), and bounds only in the help text (Typer would add
    ``[x>=1]``; it checks them from its own copy of the declaration, which stays)."""
    for sub in getattr(command, "commands", {}).values():
        one_help_style(sub)
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        help_option.metavar = ""
    for param in command.params:
        if isinstance(param, TyperArgument):
            param.__class__ = HelpArgument
        param.min = param.max = None  # display only: see the docstring


class HelpArgument(TyperArgument):
    """Typer's argument, shown as click shows one: no type after the metavar, no braces in usage."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def handle_termination() -> None:
    """Make SIGTERM stop the process like Ctrl-C (KeyboardInterrupt), so runs stay resumable."""
    signal.signal(signal.SIGTERM, _terminate)
