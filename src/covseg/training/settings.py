"""What each training setting is: the metadata on every :class:`~covseg.training.config.TrainConfig` field.

A setting's metadata (:class:`Setting`, attached with :func:`setting`) holds its command-line
name, help, unit, bounds or choices, the commands that take it, whether it may change on
``--resume``, and how ``covseg benchmark`` treats it (shared by every pair, per machine, or set
per pair). Everything else is generated from it: the ``covseg train`` and ``covseg benchmark``
options (:mod:`covseg.commands._settings`), the type checks of config files and config.json, the
bounds checks, the ``--resume`` rule and the benchmark's "settings differ" check. This module
imports neither torch nor typer, so building the command line stays cheap.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from covseg.core.errors import CovsegError

TRAIN, BENCHMARK = "train", "benchmark"
SHARED, MACHINE, PAIR, TRAIN_ONLY = "shared", "machine", "pair", "train-only"
"""Benchmark scopes: shared by every pair (fixed for the benchmark folder), this machine's (may
differ between workers, like ``--device``), set per pair by the benchmark itself, or not a benchmark
setting at all (``--model-option``: one model's factory arguments, which its other models lack)."""

DATA, TRAINING, RUN = "Data", "Training", "Run"
"""Help panels the options are grouped in."""


@dataclass(frozen=True)
class Rule:
    """A value that only matters when ``applies(config)`` holds, e.g. a warm-up needs a scheduler.

    When it does not hold, a value set explicitly (option or config file) is refused in one line
    naming both settings; one from a recipe or default is recorded as ``unused`` instead.
    """

    applies: Callable[[Any], bool]
    depends_on: str
    reason: str
    unused: Any = None


@dataclass(frozen=True)
class Setting:
    """The metadata of one TrainConfig field (see the module docstring)."""

    help: str
    option: str | None = None
    """Its command-line option (``--epochs``), or None when no command takes it as an option."""
    renamed_from: tuple[str, ...] = ()
    """Earlier spellings of ``option``: still accepted, hidden from the help, with a one-line
    ``warning:`` that names the new spelling."""
    renamed_misread: Callable[[Any], str | None] | None = None
    """For a value given under an old spelling: why it was probably meant for another command's
    option of that name (eval's ``--split val``), refused in one line; None when it fits this one."""
    unit: str | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    """``low`` itself is not allowed (a learning rate must be more than 0)."""
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    commands: tuple[str, ...] = (TRAIN, BENCHMARK)
    scope: str = SHARED
    pair_option: str | None = None
    """The ``covseg benchmark`` option that sets a per-pair setting (``--seeds`` for the seed)."""
    resumable: bool = False
    """May change when a stopped run is resumed (the rest is fixed by the run's config.json)."""
    settable: bool = True
    """Config files and recipes may set it (False: recorded by covseg only, e.g. the intensity kind)."""
    parse: Callable[[Any], Any] | None = None
    """Turns an option's text or a file's value into the field's value (e.g. ``--window lung``)."""
    metavar: str | None = None
    show: Callable[[Any], str] | None = None
    """How messages show a value (e.g. HU windows as ``-600:1500``); plain ``str`` otherwise."""
    repeatable: bool = False
    """The option may be given several times (``--dataset-option a=1 --dataset-option b=2``)."""
    default_text: str | None = None
    """How the help shows a default that is not a plain value (e.g. "native size")."""
    bound_reason: str | None = None
    rule: Rule | tuple[Rule, ...] | None = None
    """When the value matters (several rules: it matters only when all of them apply)."""
    panel: str = TRAINING

    @property
    def rules(self) -> tuple[Rule, ...]:
        if self.rule is None:
            return ()
        return self.rule if isinstance(self.rule, tuple) else (self.rule,)


def setting(**metadata: Any) -> dict[str, Setting]:
    """A field's metadata: ``field(default=150, metadata=setting(option="--epochs", ...))``."""
    return {"setting": Setting(**metadata)}


def setting_of(field: dataclasses.Field) -> Setting | None:
    return field.metadata.get("setting")


def explicit(source: str | None) -> bool:
    """Whether a value's source is the user's: an option (``--lr``), a config file or an argument."""
    return source is not None and source.startswith(("--", "config ", "argument"))


# ---- types ----------------------------------------------------------------------------------------
def _members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def allows_none(hint: Any) -> bool:
    return type(None) in _members(hint)


def base_type(hint: Any) -> Any:
    """``int | None`` -> ``int``; ``dict[str, str]`` -> ``dict``; ``list[str]`` -> ``list``."""
    member = next(item for item in _members(hint) if item is not type(None))
    return typing.get_origin(member) or member


def _conforms(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_conforms(value, member) for member in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if typing.get_origin(hint) is list or hint is list:
        (item_type,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_conforms(item, item_type) for item in value)
    if typing.get_origin(hint) is dict or hint is dict:
        key_type, value_type = typing.get_args(hint) or (str, Any)
        return isinstance(value, dict) and all(
            _conforms(key, key_type) and _conforms(item, value_type) for key, item in value.items())
    raise TypeError(f"no check for the type {hint}")  # a TrainConfig field of a new type


_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
             dict: "a table of key/value pairs", list: "a list"}


def expected(hint: Any) -> str:
    """``int | None`` -> "an integer or null", for error messages."""
    members = [member for member in _members(hint) if member is not type(None)]
    text = " or ".join(_EXPECTED.get(typing.get_origin(member) or member, str(member)) for member in members)
    return f"{text} or null" if allows_none(hint) else text


def describe_value(value: Any) -> str:
    """How an error shows a value of the wrong type: "the string '8'", "a list", "true"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return repr(value)
    return {dict: "a table", list: "a list", tuple: "a list"}.get(type(value), f"a {type(value).__name__}")


def check_value(name: str, value: Any, hint: Any, info: Setting | None, where: str) -> Any:
    """``value`` parsed (:attr:`Setting.parse`) and type-checked; one-line error naming ``where``."""
    if value is None and allows_none(hint):
        return None
    if info is not None and info.parse is not None:
        try:
            value = info.parse(value)
        except CovsegError as error:
            raise CovsegError(f"{where}: {error}") from None
    if not _conforms(value, hint):
        raise CovsegError(f"{where}: expected {expected(hint)}, got {describe_value(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CovsegError(f"{where}: {value} is not a finite number")
    return value


# ---- bounds ---------------------------------------------------------------------------------------
def format_number(value: float) -> str:
    """``0.001``, ``1e-5`` (not ``1e-05``), ``150``: numbers as messages and help show them."""
    if not isinstance(value, float):
        return str(value)
    return re.sub(r"e([+-])0*(\d)", lambda match: f"e{match[1].replace('+', '')}{match[2]}", f"{value:g}")


_number = format_number


def bounds_text(info: Setting) -> str | None:
    """``1..100000``, ``> 0 and <= 10``, for the help; None when unbounded."""
    if info.low is None and info.high is None:
        return None
    if not info.open_low and not info.open_high and info.low is not None and info.high is not None:
        return f"{_number(info.low)}..{_number(info.high)}"
    parts = []
    if info.low is not None:
        parts.append(f"{'>' if info.open_low else '>='} {_number(info.low)}")
    if info.high is not None:
        parts.append(f"{'<' if info.open_high else '<='} {_number(info.high)}")
    return " and ".join(parts)


def bounds_problem(value: Any, info: Setting) -> str | None:
    """What is wrong with ``value`` against the setting's bounds and choices, or None."""
    if info.choices is not None and value not in info.choices:
        return f"choose one of {', '.join(info.choices)}"
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    reason = f" ({info.bound_reason})" if info.bound_reason else ""
    low, high = info.low, info.high
    too_low = low is not None and (value <= low if info.open_low else value < low)
    too_high = high is not None and (value >= high if info.open_high else value > high)
    if not (too_low or too_high):
        return None
    if low is not None and high is not None and not (info.open_low or info.open_high):
        return f"must be between {_number(low)} and {_number(high)}{reason}"
    parts = []
    if low is not None:
        parts.append(f"{'more than' if info.open_low else 'at least'} {_number(low)}")
    if high is not None:
        parts.append(f"{'less than' if info.open_high else 'at most'} {_number(high)}")
    return f"must be {' and '.join(parts)}{reason}"


def parse_text(text: str, kind: Any, option: str) -> Any:
    """An option's text as ``int`` or ``float`` (one-line error naming the option)."""
    try:
        value = int(text) if kind is int else float(text)
    except ValueError:
        raise CovsegError(f"{option} {text}: expected {_EXPECTED[kind]}") from None
    if not math.isfinite(value):
        raise CovsegError(f"{option} {text}: expected a finite number")
    return value


def fields_with_settings(cls: type) -> list[tuple[dataclasses.Field, Setting, Any]]:
    """(field, setting, type hint) of every field of ``cls`` that carries a :class:`Setting`."""
    hints = typing.get_type_hints(cls)
    return [(field, info, hints[field.name]) for field in dataclasses.fields(cls)
            if (info := setting_of(field)) is not None]


def option_name(name: str, info: Setting | None) -> str:
    """The option that sets field ``name`` (``--batch-size``), or the field name when it has none."""
    return info.option if info is not None and info.option else name


def unknown_key_hint(key: str, names: Mapping[str, Setting]) -> str:
    """``; did you mean batch_size?`` for a file key that is an option name or a near miss."""
    import difflib

    for name, info in names.items():
        if info.option and key.lstrip("-").replace("-", "_") in (info.option.lstrip("-").replace("-", "_"),):
            return f"; did you mean {name} (the setting of {info.option})?"
    close = difflib.get_close_matches(key.replace("-", "_"), list(names), n=1)
    return f"; did you mean {close[0]}?" if close else ""
