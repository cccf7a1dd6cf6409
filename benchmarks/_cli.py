"""How every benchmark script ends a mistake: one ``error:`` line and exit code 2, as ``covseg`` does;
and how a Typer script's ``--help`` reads like covseg's own.

A script's ``main`` raises covseg's own one-line errors (a bad option value reaches TrainConfig, a
missing folder reaches a reader) and OSErrors (an unwritable ``--out``); :func:`run_script` prints them
without a traceback. Anything else is a bug and keeps its traceback.

A Typer script declares its options with covseg's :func:`~covseg.commands._common.option` and
:func:`~covseg.commands._common.argument` and runs as ``run_script(typer_app(main))``: the app is
``typer.run``'s, with :func:`~covseg.commands._common.one_help_style` applied to its command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import typer
from typer.core import TyperCommand

from covseg.commands._common import one_help_style
from covseg.core.errors import CovsegError
from covseg.files import describe_os_error


def run_script(main: Callable[..., Any], *args: Any) -> None:
    """Call ``main(*args)``; CovsegError and OSError become ``error: ...`` on stderr, exit code 2."""
    try:
        main(*args)
    except CovsegError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:
        print(f"error: {describe_os_error(error, action='use')}", file=sys.stderr)
        raise SystemExit(2) from None


class OneHelpStyleCommand(TyperCommand):
    """Typer's command with covseg's help style (upper-case metavars, no ``<str>``/``<bool>``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        one_help_style(self)


def typer_app(main: Callable[..., Any]) -> typer.Typer:
    """``main`` as the one-command app ``typer.run(main)`` would run, its help in covseg's style."""
    app = typer.Typer(add_completion=False)
    app.command(cls=OneHelpStyleCommand)(main)
    return app


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default, except where there is none (None) to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)
