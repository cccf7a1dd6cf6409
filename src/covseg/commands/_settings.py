"""Command-line options generated from the TrainConfig fields (the way LightningCLI reads a class).

:func:`with_settings` adds one option per setting a command takes (its name, help, unit, bounds,
choices and defaults from the field's :class:`~covseg.training.settings.Setting`) to a Typer
command, and hands the command the options the user gave explicitly, by field name. Numbers are
read here, not by click, so that ``--epochs ten`` is one ``error:`` line like every other mistake.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from covseg.core.errors import CovsegError
from covseg.training.config import TrainConfig
from covseg.training.recipes import RECIPES
from covseg.training.settings import (
    Setting,
    base_type,
    bounds_text,
    fields_with_settings,
    format_number,
    parse_text,
)

F = TypeVar("F", bound=Callable[..., Any])
GIVEN_SOURCES = ("COMMANDLINE", "ENVIRONMENT")
METAVARS = {int: "INTEGER", float: "NUMBER", str: "TEXT"}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "none"
    return format_number(value) if isinstance(value, float) else str(value)


def _default_text(field: dataclasses.Field, info: Setting) -> str:
    """``150; reference recipe: 1500``: the field default and every recipe's own value."""
    if info.default_text is not None:
        default = info.default_text
    elif field.default is not dataclasses.MISSING:
        default = _shown(field.default)
    else:
        default = _shown(field.default_factory())
    recipes = [f"{name} recipe: {_shown(recipe.values[field.name])}" for name, recipe in RECIPES.items()
               if field.name in recipe.values and _shown(recipe.values[field.name]) != default]
    return "; ".join([default, *recipes])


def help_text(field: dataclasses.Field, info: Setting) -> str:
    """The option's help: what it is, its choices or bounds and unit, and its defaults."""
    parts = [info.help]
    if info.choices:
        parts.append(f"One of {', '.join(info.choices[:-1])} or {info.choices[-1]}."
                     if len(info.choices) > 1 else f"Only {info.choices[0]}.")
    bounds = bounds_text(info)
    if bounds or info.unit:
        parts.append(f"({' '.join(item for item in (bounds, info.unit) if item)})")
    parts.append(f"(default: {_default_text(field, info)})")
    return escape(" ".join(parts))  # Typer reads help as rich markup: keep any [brackets] as typed


def _parameter(field: dataclasses.Field, info: Setting, hint: Any) -> inspect.Parameter:
    kind = base_type(hint)
    if kind is bool:
        declaration = f"{info.option}/--no-{info.option.removeprefix('--')}"
        annotation: Any = bool | None
    elif info.repeatable:
        declaration, annotation = info.option, list[str] | None  # --dataset-option KEY=VALUE, repeated
    else:
        declaration, annotation = info.option, str | None
    option = typer.Option(declaration, help=help_text(field, info), rich_help_panel=info.panel,
                          metavar="" if kind is bool else (info.metavar or METAVARS.get(kind, "TEXT")),
                          show_default=False)
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[annotation, option])


RENAMED = "__renamed"
"""Suffix of the hidden parameter that takes a setting's earlier spellings (Setting.renamed_from)."""


def _renamed_parameter(field: dataclasses.Field, info: Setting, hint: Any) -> inspect.Parameter:
    """A hidden option under the setting's old names, so that old command lines keep working."""
    annotation = list[str] | None if info.repeatable else str | None
    option = typer.Option(*info.renamed_from, hidden=True, show_default=False, metavar=info.metavar or "")
    return inspect.Parameter(field.name + RENAMED, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[annotation, option])


def _given(ctx: typer.Context, name: str) -> bool:
    # By name: typer may bring its own copy of click's ParameterSource enum.
    return getattr(ctx.get_parameter_source(name), "name", "") in GIVEN_SOURCES


def _from_old_spelling(ctx: typer.Context, command: str, info: Setting, name: str, new_given: bool,
                       value: Any) -> bool:
    """Whether the setting came under an old spelling; warns once, refuses both spellings at once,
    and refuses in one line a value meant for another command's option of that name
    (:attr:`Setting.renamed_misread`)."""
    if not _given(ctx, name + RENAMED):
        return False
    old = " or ".join(info.renamed_from)
    from covseg.commands._common import renamed_option

    if new_given:  # the same option twice: renamed_option refuses it
        renamed_option(old, info.option, command, new_given=True)
    misread = info.renamed_misread(value) if info.renamed_misread is not None else None
    if misread is not None:
        new = f"{info.option} {info.metavar}" if info.metavar else info.option
        raise CovsegError(f"{old} {value}: in `covseg {command}`, {old} is the old name of {new}; {misread}")
    renamed_option(old, info.option, command, new_given=False)  # the one deprecation warning
    return True


def setting_option(name: str) -> Any:
    """The generated option of TrainConfig field ``name`` as an annotation, for a command that is not
    :func:`with_settings`' (``covseg eval --precision``): ``precision: PRECISION = None``.

    The command receives the option's text (or None when not given) and checks it itself."""
    for field, info, hint in fields_with_settings(TrainConfig):
        if field.name == name:
            return _parameter(field, info, hint).annotation
    raise KeyError(name)


def command_settings(command: str) -> list[tuple[dataclasses.Field, Setting, Any]]:
    """The settings ``command`` takes as options, in field order."""
    return [(field, info, hint) for field, info, hint in fields_with_settings(TrainConfig)
            if info.option and command in info.commands]


def _read(value: Any, info: Setting, hint: Any) -> Any:
    """An option's value as the field's type: numbers parsed here; the rest checked by TrainConfig."""
    kind = base_type(hint)
    if kind in (int, float) and isinstance(value, str):
        return parse_text(value, kind, info.option)
    return value


def with_settings(command: str) -> Callable[[F], F]:
    """Give a Typer command one option per setting ``command`` takes (see the module docstring).

    The decorated function takes a keyword ``settings``: the options given explicitly (on the
    command line or through the environment), by TrainConfig field name, numbers already parsed.
    """
    generated = command_settings(command)

    def decorate(function: F) -> F:
        own = inspect.signature(function, eval_str=True)
        wants_context = "ctx" in own.parameters
        parameters = [parameter for name, parameter in own.parameters.items()
                      if name not in ("ctx", "settings")]
        context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        parameters = [context, *parameters, *(_parameter(*item) for item in generated),
                      *(_renamed_parameter(*item) for item in generated if item[1].renamed_from)]

        @functools.wraps(function)
        def wrapper(ctx: typer.Context, **kwargs: Any) -> Any:
            given = {}
            for field, info, hint in generated:
                value = kwargs.pop(field.name)
                old_value = kwargs.pop(field.name + RENAMED, None)
                if _given(ctx, field.name):
                    given[field.name] = _read(value, info, hint)
                if info.renamed_from and _from_old_spelling(ctx, command, info, field.name,
                                                            field.name in given, old_value):
                    given[field.name] = _read(old_value, info, hint)
            if wants_context:
                kwargs["ctx"] = ctx
            return function(**kwargs, settings=given)

        wrapper.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        del wrapper.__wrapped__  # typer must read the generated signature, not the function's
        return wrapper  # type: ignore[return-value]

    return decorate
