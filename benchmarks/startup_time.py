"""Start-up time of covseg's light commands against ``python -c pass``, in the same run.

Each command runs in a fresh interpreter (``python -m covseg ...``, what the ``covseg`` script
does), output discarded; the rounds go through every command in turn, so background load on a
shared machine hits all of them alike. The table gives the median and best wall time of each, the
time over the ``python -c pass`` baseline (the interpreter's own start-up), and ``python -c "import
torch"`` for scale. Which modules each command loads is a test (``tests/test_imports.py``); the
target of issue 12 is ``covseg --help`` under 0.5 s on the development machine.

    python benchmarks/startup_time.py                 # 9 rounds
    python benchmarks/startup_time.py --rounds 15 --markdown
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Annotated

from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from _markdown import print_markdown  # benchmarks/_markdown.py (scripts run from this folder)
from rich.table import Table

from covseg.benchmark.hardware import cpu_name
from covseg.commands._common import option
from covseg.terminal import SafeConsole

console = SafeConsole(width=120)
PYTHON = sys.executable
BASELINE = "python -c pass"
COMMANDS: dict[str, list[str]] = {
    BASELINE: [PYTHON, "-c", "pass"],
    "covseg --help": [PYTHON, "-m", "covseg", "--help"],
    "covseg --version": [PYTHON, "-m", "covseg", "--version"],
    "covseg predict --help": [PYTHON, "-m", "covseg", "predict", "--help"],
    "covseg export --help": [PYTHON, "-m", "covseg", "export", "--help"],
    "covseg eval --help": [PYTHON, "-m", "covseg", "eval", "--help"],
    "covseg data list": [PYTHON, "-m", "covseg", "data", "list"],
    "covseg plugins": [PYTHON, "-m", "covseg", "plugins"],
    "covseg models": [PYTHON, "-m", "covseg", "models"],
    'python -c "import torch" (for scale)': [PYTHON, "-c", "import torch"],
}
TARGET_S = 0.5
"""Issue 12: ``covseg --help`` under half a second on the 2-core development machine."""


def wall_time(command: list[str]) -> float:
    """Seconds from start to exit of ``command``; a failing command stops the benchmark."""
    start = time.perf_counter()
    subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def machine() -> str:
    cpu = cpu_name()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} cores{load}; Python {platform.python_version()}"


def main(
    rounds: Annotated[int, option("--rounds", metavar="INTEGER", min=1, default_text="9",
                                  help="Runs of each command (median reported).")] = 9,
    markdown: Annotated[bool, option("--markdown", help="Also print the table as Markdown.")] = False,
) -> None:
    """Time each command's start-up against `python -c pass` and print the table."""
    console.print(f"machine: {machine()}", highlight=False)
    for command in COMMANDS.values():  # warm the file cache; not timed
        wall_time(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(rounds):
        for name, command in COMMANDS.items():
            times[name].append(wall_time(command))
    baseline = statistics.median(times[BASELINE])
    columns = ("command", "median s", "best s", "over baseline s", "x baseline")
    table = Table(title=f"start-up time, {rounds} rounds, same run")
    for column in columns:
        table.add_column(column, justify="left" if column == "command" else "right")
    rows = []
    for name, measured in times.items():
        median = statistics.median(measured)
        row = (name, f"{median:.3f}", f"{min(measured):.3f}", f"{median - baseline:+.3f}",
               f"{median / baseline:.1f}")
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    help_time = statistics.median(times["covseg --help"])
    verdict = "met" if help_time < TARGET_S else "NOT met"
    console.print(f"target covseg --help < {TARGET_S} s: {verdict} ({help_time:.3f} s)", highlight=False)
    if markdown:
        print_markdown(columns, rows)


if __name__ == "__main__":
    run_script(typer_app(main))
