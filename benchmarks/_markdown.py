"""The markdown form of a benchmark's table (``--markdown``), for pasting into RESULTS.md."""

from __future__ import annotations

from collections.abc import Sequence


def print_markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print ``rows`` under ``columns`` as a GitHub markdown table on stdout."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row) + " |")
