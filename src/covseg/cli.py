"""The `covseg` command line: wires the command modules of :mod:`covseg.commands` into one app."""

from __future__ import annotations

import typer

from covseg import __version__
from covseg.commands import plugins

app = typer.Typer(
    name="covseg",
    help="Train, compare and ship segmentation models for COVID-19 lesions in chest CT.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("models")(plugins.models)
app.command("plugins")(plugins.plugins)


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


def main() -> None:
    app()
