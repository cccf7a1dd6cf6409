"""The `covseg` command line: wires the command modules of :mod:`covseg.commands` into one app.

Command modules import only what their options need (Typer, rich's console, covseg's light
modules); torch, timm, albumentations, OpenCV and onnxruntime are imported inside the commands that
use them, so ``covseg --help``, ``--version`` and every ``COMMAND --help`` start fast
(``tests/test_startup.py`` checks which modules load, ``benchmarks/startup_time.py`` times them).
"""

from __future__ import annotations

import typer

from covseg import __version__
from covseg.commands import benchmark as benchmark_command
from covseg.commands import data as data_command
from covseg.commands import demo as demo_command
from covseg.commands import plugins
from covseg.commands import train as train_command
from covseg.commands._common import handle_termination
from covseg.commands.evaluate import evaluate as evaluate_command
from covseg.commands.export import export as export_command
from covseg.commands.predict import predict as predict_command

app = typer.Typer(
    name="covseg",
    help="Train, compare and ship segmentation models for COVID-19 lesions in chest CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("models")(plugins.models)
app.command("plugins")(plugins.plugins)
app.add_typer(data_command.app, name="data")
app.command("train")(train_command.train)
app.command("eval")(evaluate_command)
app.command("export")(export_command)
app.command("predict")(predict_command)
app.command("benchmark")(benchmark_command.benchmark)
app.command("demo")(demo_command.demo)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"covseg {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                 callback=_version, is_eager=True),
) -> None:
    """covseg: train, compare and ship COVID-19 CT lesion segmentation models."""
    from covseg.commands._logging import setup_logging

    setup_logging()  # library messages (logging) reach the terminal through covseg's safe consoles


def main() -> None:
    handle_termination()
    app()
