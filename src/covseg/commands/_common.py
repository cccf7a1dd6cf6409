"""What every command shares: the rich consoles and the one-line handling of user errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from covseg.core.errors import CovsegError

console = Console()
error_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

EXIT_USER_ERROR = 2


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on one line to stderr and return the exit to raise."""
    error_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(EXIT_USER_ERROR)


def user_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`CovsegError` raised by a command into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CovsegError as error:
            raise fail(str(error)) from None

    return wrapper
