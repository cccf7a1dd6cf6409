"""What every command shares: the consoles and the one boundary where faults become one line.

:func:`user_errors` wraps each command. Whatever goes wrong below it ends as ``error: ...`` on one
line of stderr with exit code 2, never a traceback:

- :class:`CovsegError`: bad input, with the message the code wrote;
- :class:`OSError`: disk full, read-only folder, permission denied, a folder where a file was
  expected, ... named with the path the operating system gave;
- :class:`MemoryError`: says so, with the advice to use smaller images or batches.

SIGTERM (what Slurm and Kubernetes send before killing a job at its time limit) is turned into
``KeyboardInterrupt`` by :func:`handle_termination`, so it stops a command exactly like Ctrl-C.
"""

from __future__ import annotations

import functools
import signal
from collections.abc import Callable
from types import FrameType
from typing import ParamSpec, TypeVar

import typer

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error
from covseg.terminal import console, error_console, join, styled

__all__ = ["EXIT_USER_ERROR", "console", "error_console", "error_line", "fail", "user_errors", "warn",
           "warn_mixed_onnxruntime"]

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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


def handle_termination() -> None:
    """Make SIGTERM stop the process like Ctrl-C (KeyboardInterrupt), so runs stay resumable."""
    signal.signal(signal.SIGTERM, _terminate)
