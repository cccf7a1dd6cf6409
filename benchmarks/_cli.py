"""How every benchmark script ends a mistake: one ``error:`` line and exit code 2, as ``covseg`` does.

A script's ``main`` raises covseg's own one-line errors (a bad option value reaches TrainConfig, a
missing folder reaches a reader) and OSErrors (an unwritable ``--out``); :func:`run_script` prints them
without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

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


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's help with each option's default, except where there is none (None) to show."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        return action.help if action.default is None else super()._get_help_string(action)
