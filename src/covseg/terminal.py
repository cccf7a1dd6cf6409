"""The one place where text reaches the terminal: consoles that never read user text as markup.

Paths, file names, slice ids, plugin names and ONNX metadata are user text: ``scans[/2020]`` is a
valid folder name and would be a rich markup tag. covseg's consoles therefore have markup off, and
every string they render (messages, table cells, titles) passes :func:`clean_text` first: control
characters from files (``ESC`` sequences, ``\\r``, ``\\b``) are shown as ``\\xNN`` instead of
acting on the terminal, and overlong strings are cut. Styling is done with :class:`rich.text.Text`
(:func:`styled`), never with markup in strings.
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

TEXT_LIMIT = 2000
"""Characters of one string shown on the terminal; longer strings are cut with a note."""

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str, limit: int = TEXT_LIMIT) -> str:
    """``text`` safe for a terminal: control characters as ``\\xNN``, at most ``limit`` characters."""
    text = _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text) - limit:,} more characters)"
    return text


class SafeConsole(Console):
    """A rich Console whose strings are plain text (no markup, no highlighting), cleaned."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("markup", False)
        kwargs.setdefault("highlight", False)
        kwargs.setdefault("emoji", False)
        super().__init__(**kwargs)

    def render_str(self, text: str, **kwargs: Any) -> Text:
        kwargs["markup"] = False
        kwargs["emoji"] = False
        kwargs.setdefault("highlight", False)
        return super().render_str(clean_text(text), **kwargs)


class Table(RichTable):
    """A rich Table whose cells wrap on a narrow terminal, folding a word longer than its column
    onto the next line, instead of ending in "…": a number cut short reads as another number.
    Every covseg table is one of these."""

    def add_column(self, header: Any = "", footer: Any = "", **kwargs: Any) -> None:
        kwargs.setdefault("overflow", "fold")
        super().add_column(header, footer, **kwargs)


def styled(text: str, style: str) -> Text:
    """``text`` (cleaned) in a rich ``style``, e.g. ``styled("error:", "bold red")``."""
    return Text(clean_text(text), style=style)


def join(*parts: str | Text) -> Text:
    """Plain strings (cleaned) and styled parts as one line of text."""
    line = Text()
    for part in parts:
        line.append(part if isinstance(part, Text) else Text(clean_text(part)))
    return line


console = SafeConsole()
"""Standard output: results, tables, progress."""
error_console = SafeConsole(stderr=True)
"""Standard error: errors, warnings, notices."""


def counted(count: int, noun: str) -> str:
    """``count`` and ``noun``, plural unless the count is 1: ``1 epoch``, ``2 epochs``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
