"""The `covseg` command line: wires the command modules of :mod:`covseg.commands` into one app.

Command modules import only what their options need (Typer, rich's console, covseg's light
modules); torch, timm, albumentations, OpenCV and onnxruntime are imported inside the commands that
use them, so ``covseg --help``, ``--version`` and every ``COMMAND --help`` start fast
(``tests/test_startup.py`` checks which modules load, ``benchmarks/startup_time.py`` times them).
"""

from __future__ import annotations

import difflib
import re
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup

from covseg import __version__
from covseg.commands import benchmark as benchmark_command
from covseg.commands import data as data_command
from covseg.commands import demo as demo_command
from covseg.commands import plugins
from covseg.commands import train as train_command
from covseg.commands._common import fail, handle_termination, one_help_style, option
from covseg.commands.evaluate import evaluate as evaluate_command
from covseg.commands.export import export as export_command
from covseg.commands.predict import predict as predict_command

# The click exceptions of the click Typer runs on (Typer >= 0.26 vendors its own copy, typer._click).
click_errors = sys.modules[typer.BadParameter.__module__]
# No arguments prints the help (as an error since click 8.2): not a parse error.
_NO_ARGS_HELP = getattr(click_errors, "NoArgsIsHelpError", ())


def _close_options(error: click_errors.NoSuchOption) -> list[str]:
    """The options whose names are close to the unknown one (click's own matching counts the
    shared ``--`` and so suggests unrelated options)."""
    known = {name.lstrip("-"): name for name in error.possibilities or ()}
    return [known[name] for name in difflib.get_close_matches(error.option_name.lstrip("-"), known,
                                                              n=3, cutoff=0.75)]


def _commands_taking(option: str, ctx: typer.Context | None) -> list[str]:
    """The other covseg commands that take ``option`` (shown in their help), e.g. for ``covseg eval
    --split-file``: ``covseg train``, ``covseg benchmark``."""
    if ctx is None:
        return []
    found, stack = [], [(ctx.find_root().command, ctx.find_root().info_name or "covseg")]
    while stack:
        group, path = stack.pop(0)
        for name, command in getattr(group, "commands", {}).items():
            if hasattr(command, "commands"):
                stack.append((command, f"{path} {name}"))
            elif f"{path} {name}" != ctx.command_path and any(
                    option in parameter.opts and not getattr(parameter, "hidden", False)
                    for parameter in command.params):
                found.append(f"{path} {name}")
    return found


def _listed(items: list[str]) -> str:
    return " and ".join(items) if len(items) < 3 else f"{', '.join(items[:-1])} and {items[-1]}"


def _pydantic_wording(message: str) -> str:
    """Typer checks values with pydantic: "Value error, X" -> "X", "Input should be Y" -> "must be Y"."""
    message = re.sub(r"^Value error, ", "", message)
    return re.sub(r"^Input should be ", "must be ", message).rstrip(".")


def _is_option_value_error(error: click_errors.UsageError) -> bool:
    cause = error.__cause__
    return (isinstance(error, click_errors.BadParameter) and error.param is not None
            and error.param.param_type_name == "option" and callable(getattr(cause, "errors", None))
            and bool(cause.errors()) and "msg" in cause.errors()[0])


def usage_error_line(error: click_errors.UsageError, command: str = "covseg") -> str:
    """A command-line parse error (unknown option, bad choice, bad number, missing argument) as the
    one line that follows ``error:``, e.g. ``--opset 3: must be greater than or equal to 13; see
    `covseg export --help```."""
    if isinstance(error, click_errors.NoSuchOption):
        close = _close_options(error)
        elsewhere = _commands_taking(error.option_name, error.ctx)
        message = f"no such option {error.option_name}" + (
            f" (did you mean {', '.join(close)}?)" if close else
            f" (it is an option of {_listed([f'`{name}`' for name in elsewhere])})" if elsewhere else "")
    elif _is_option_value_error(error):
        first = error.__cause__.errors()[0]  # a pydantic ValidationError: the value and what is wrong
        what = _pydantic_wording(str(first["msg"]))
        message = f"{max(error.param.opts, key=len)} {first.get('input')!s}: {what}"
    else:
        message = re.sub(r"\bValue error, ", "", error.format_message()).rstrip(".")
        message = message[:1].lower() + message[1:]
    if error.ctx is not None:  # the command whose arguments were parsed
        command = error.ctx.command_path
    return f"{message}; see `{command} --help`"


_COMMAND = "covseg.command"


def _keep_option_names_whole() -> None:
    """Typer's help tables, with the option-name columns never wrapped or cut: on a narrow terminal
    ``--foreground-oversampling`` stays whole and the type and description columns wrap instead.

    Typer builds its options table from rows alone (no column settings to pass) with the ``Table``
    of :mod:`typer.rich_utils`, a module it imports only to print help; so this is done only when
    help is asked for (startup stays light), and the columns are set as rows arrive: the column of
    the option names (the first that holds ``--NAME``) keeps its full width; every other column
    wraps, folding a word longer than the column rather than cutting it with "…".
    """
    import typer.rich_utils as rich_utils

    if getattr(rich_utils.Table, "keeps_option_names", False):
        return

    class HelpTable(rich_utils.Table):  # type: ignore[misc,name-defined]
        keeps_option_names = True

        def add_row(self, *renderables, **kwargs):  # type: ignore[no-untyped-def]
            super().add_row(*renderables, **kwargs)
            names = next((index for index, cell in enumerate(renderables)
                          if str(getattr(cell, "plain", cell)).startswith("--")), None)
            for index, column in enumerate(self.columns):
                column.overflow = "fold"
                column.no_wrap = column.no_wrap or index == names
            for cell in renderables:  # the description: a rich Columns of Text parts
                for part in getattr(cell, "renderables", ()):
                    if hasattr(part, "overflow"):
                        part.overflow = "fold"

    rich_utils.Table = HelpTable


class OneLineErrors(TyperGroup):
    """The root command group: every command-line parse error becomes one ``error:`` line, exit 2.

    Click and Typer would print a usage block and a boxed message. Catching the errors here, where
    the group parses its arguments and invokes the subcommand (which parses its own), covers every
    command and sub-group once, whether run from ``main`` or from a test's ``CliRunner``.
    ``--help``, ``--version``, no arguments (help) and Ctrl-C are not errors and pass through.
    """

    def __init__(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        one_help_style(self)  # every command's help in one style (see covseg.commands._common)

    def make_context(self, info_name, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
        if not args or "--help" in args:
            _keep_option_names_whole()
        try:
            return super().make_context(info_name, args, *rest, **kwargs)
        except _NO_ARGS_HELP:
            raise
        except click_errors.UsageError as error:
            raise fail(usage_error_line(error)) from None

    def resolve_command(self, ctx: typer.Context, args: list[str]):  # type: ignore[no-untyped-def]
        name, command, rest = super().resolve_command(ctx, args)
        ctx.meta[_COMMAND] = f"{ctx.command_path} {name}"  # for errors that carry no context
        return name, command, rest

    def invoke(self, ctx: typer.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except _NO_ARGS_HELP:
            raise
        except click_errors.UsageError as error:
            raise fail(usage_error_line(error, ctx.meta.get(_COMMAND, ctx.command_path))) from None
        except click_errors.ClickException as error:
            raise fail(error.format_message()) from None


app = typer.Typer(
    cls=OneLineErrors,
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
    version: Annotated[bool, option("--version", help="Print the version and exit.", callback=_version,
                                    is_eager=True)] = False,
) -> None:
    """covseg: train, compare and ship COVID-19 CT lesion segmentation models."""
    from covseg.commands._logging import setup_logging

    setup_logging()  # library messages (logging) reach the terminal through covseg's safe consoles


def main() -> None:
    handle_termination()
    app()
