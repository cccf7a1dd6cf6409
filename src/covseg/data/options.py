"""Dataset options: ``--dataset-option key=value`` strings, parsed and checked with one-line errors."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from covseg.core.errors import CovsegError

DATASET_OPTION = "--dataset-option"
"""The option that sets the options of the data (``--data``) by default."""
_option_name: ContextVar[str] = ContextVar("covseg_dataset_option", default=DATASET_OPTION)


def option_name() -> str:
    """The option that sets the options of the data being loaded now, for the advice in errors:
    ``--dataset-option``, or ``--test-dataset-option`` while ``--test-data`` loads (see
    :func:`options_named`). A context variable, so that plugins' readers need no extra argument."""
    return _option_name.get()


@contextmanager
def options_named(name: str) -> Iterator[None]:
    """Within the block, :func:`option_name` is ``name`` (e.g. ``--test-dataset-option``)."""
    token = _option_name.set(name)
    try:
        yield
    finally:
        _option_name.reset(token)


def parse_dataset_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``["count=40", "seed=1"]`` -> ``{"count": "40", "seed": "1"}``; a later key wins."""
    options: dict[str, str] = {}
    for pair in pairs or ():
        key, separator, value = pair.partition("=")
        if not separator or not key.strip():
            raise CovsegError(f"{option_name()} '{pair}' is not key=value (e.g. count=40)")
        options[key.strip()] = value.strip()
    return options


def check_known(options: Mapping[str, str], known: Iterable[str], dataset: str) -> None:
    """Refuse options the dataset does not have, naming the ones it has."""
    known = list(known)
    for key in options:
        if key not in known:
            has = ", ".join(known) if known else "none"
            raise CovsegError(f"dataset {dataset} has no option '{key}' (its options: {has})")


def int_option(options: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer option within [minimum, maximum], or its default when absent."""
    if name not in options:
        return default
    text = options[name]
    try:
        value = int(text)
    except ValueError:
        raise CovsegError(f"option {name}={text}: expected an integer") from None
    if not minimum <= value <= maximum:
        raise CovsegError(f"option {name}={text}: must be between {minimum} and {maximum}")
    return value
