"""Calling the lifecycle hooks of one training run, one plugin at a time, faults isolated.

:class:`RunHooks` calls a lifecycle hook (``covseg_train_start``, ``covseg_epoch_end``, ...; see
:mod:`covseg.core.hookspecs`) on every installed plugin that implements it, then on the run's
listeners (its ``--log`` loggers, the command's progress bar). Each plugin is called on its own
through pluggy (so ``COVSEG_TRACE_PLUGINS`` sees the calls): one that raises is reported once, as a
warning line naming it, its package and the hook, and is not called again in this run; the others
and the run go on. Arguments are handed over read-only (:func:`read_only`).
"""

from __future__ import annotations

import logging
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from covseg.core.calls import error_text
from covseg.core.hookspecs import LIFECYCLE_HOOKS
from covseg.core.registry import PluginInfo, Registry

logger = logging.getLogger(__name__)


def read_only(value: Any) -> Any:
    """``value`` that a hook cannot change: mappings as MappingProxyType, lists as tuples, numpy
    arrays as read-only views, recursively; other values as they are (copies of mutable ones are
    made by the caller: the run's own objects are never handed over)."""
    if isinstance(value, Mapping):
        return types.MappingProxyType({key: read_only(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(read_only(item) for item in value)
    if type(value).__module__ == "numpy" and hasattr(value, "flags"):
        view = value.view()
        view.flags.writeable = False
        return view
    return value


class RunHooks:
    """The lifecycle hooks of one run: installed plugins first, then ``listeners`` (objects with
    hook methods and the :class:`PluginInfo` that names them in messages).

    Use as ``with hooks.attached(): ...`` around the run, so that the listeners are registered
    with pluggy only while it lasts. ``enabled`` False (ranks other than 0 under torchrun) makes
    every call a no-op.
    """

    def __init__(
        self,
        registry: Registry,
        listeners: Sequence[tuple[object, PluginInfo]] = (),
        enabled: bool = True,
    ) -> None:
        self.registry = registry
        self.listeners = list(listeners) if enabled else []
        self.enabled = enabled
        self.failed: dict[int, str] = {}
        """id of each plugin object that raised -> the hook it raised in."""
        self._callers: dict[str, list[tuple[object, PluginInfo, Callable[..., Any]]]] = {}

    @contextmanager
    def attached(self) -> Iterator[RunHooks]:
        """Register the listeners for the block (raises CovsegError for one pluggy refuses)."""
        with self.registry.attached(self.listeners):
            self._callers.clear()
            try:
                yield self
            finally:
                self._callers.clear()

    def _plugins_with(self, hook: str) -> list[tuple[object, PluginInfo, Callable[..., Any]]]:
        if hook not in self._callers:
            manager = self.registry.manager
            implementing = {id(impl.plugin) for impl in getattr(manager.hook, hook).get_hookimpls()}
            callers = []
            for plugin, info in [*self.registry.installed_plugins(), *self.listeners]:
                if id(plugin) not in implementing:
                    continue
                others = [other for other in manager.get_plugins() if other is not plugin]
                callers.append((plugin, info, manager.subset_hook_caller(hook, remove_plugins=others)))
            self._callers[hook] = callers
        return [item for item in self._callers[hook] if id(item[0]) not in self.failed]

    def wanted(self, hook: str) -> bool:
        """Whether any plugin still listens to ``hook`` (so that the run can skip what only it needs)."""
        return self.enabled and bool(self._plugins_with(hook))

    def call(self, hook: str, **arguments: Any) -> None:
        """Call ``hook`` on each plugin that implements it, with read-only ``arguments``."""
        if hook not in LIFECYCLE_HOOKS:
            raise ValueError(f"{hook} is not a lifecycle hook")
        if not self.enabled:
            return
        plugins = self._plugins_with(hook)
        if not plugins:
            return
        frozen = {name: read_only(value) for name, value in arguments.items()}
        for plugin, info, caller in plugins:
            try:
                caller(**frozen)
            except (Exception, SystemExit) as error:  # a listener must not stop a long run
                self.failed[id(plugin)] = hook
                logger.warning("plugin %s failed in %s: %s; the run goes on without it",
                               info.label, hook, error_text(error))
