"""``COVSEG_TRACE_PLUGINS=1``: log plugin loading and every hook call, like datasette's
``DATASETTE_TRACE_PLUGINS``, through pluggy's hook-call monitoring and the ``logging`` module."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

import pluggy

from covseg.files import one_line

TRACE_VARIABLE = "COVSEG_TRACE_PLUGINS"
logger = logging.getLogger("covseg.plugins")


def trace_requested(environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``$COVSEG_TRACE_PLUGINS`` asks for tracing (anything but empty, 0, false, no, off)."""
    value = (os.environ if environ is None else environ).get(TRACE_VARIABLE, "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


def enable_tracing(manager: pluggy.PluginManager) -> None:
    """Log every hook call with the plugins it reaches and what they returned (pluggy monitoring).

    Where logging is not configured, the ``covseg.plugins`` logger gets a handler on stderr.
    """
    if logger.getEffectiveLevel() > logging.DEBUG:
        logger.setLevel(logging.DEBUG)
    if not logger.hasHandlers():
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False  # a handler added later higher up (the CLI's) must not repeat them

    def before(hook_name: str, hook_impls: list, kwargs: Mapping[str, Any]) -> None:
        plugins = ", ".join(impl.plugin_name for impl in hook_impls) or "no plugin"
        logger.debug("calling %s on %s", hook_name, plugins)

    def after(outcome: pluggy.Result, hook_name: str, hook_impls: list, kwargs: Mapping[str, Any]) -> None:
        plugins = ", ".join(impl.plugin_name for impl in hook_impls) or "no plugin"
        if outcome.exception is not None:
            logger.debug("%s on %s raised %s", hook_name, plugins, one_line(outcome.exception))
            return
        names = [getattr(entry, "name", type(entry).__name__) for result in outcome.get_result()
                 for entry in (result if isinstance(result, (list, tuple)) else [result])
                 if entry is not None]  # lifecycle hooks return nothing
        logger.debug("%s on %s returned %s", hook_name, plugins, ", ".join(map(str, names)) or "nothing")

    manager.add_hookcall_monitoring(before, after)
