"""The registry: loads the plugins, collects their entries and looks them up by name.

No plugin can take covseg down. Each plugin is imported on its own, each hook is called per plugin,
and what they return is checked, so a plugin that fails to import (even by calling ``sys.exit``),
a hook that raises or returns something that is not an entry, are recorded as
:class:`PluginFailure` (one line naming the package) while the other plugins keep working. Two
plugins offering one name are a :class:`Conflict`: listed, and refused only when that name is used,
with the ``COVSEG_DISABLE_PLUGINS`` setting that resolves it. Calling into a plugin later (a model
factory, a dataset loader) goes through :mod:`covseg.core.calls`, which turns its faults into one
:class:`~covseg.core.errors.CovsegError` naming the entry and its package.

``COVSEG_TRACE_PLUGINS=1`` logs plugin loading and every hook call (pluggy's hook-call monitoring)
to the ``covseg.plugins`` logger, on stderr unless logging is configured otherwise.

The lifecycle hooks of a training run are called through :mod:`covseg.core.lifecycle`, on the
installed plugins and on the run's listeners, which :meth:`Registry.attached` registers with pluggy
for the run only.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.metadata
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import pluggy

from covseg.core import hookspecs
from covseg.core.calls import a_value as _a
from covseg.core.calls import build_model, error_text
from covseg.core.discovery import (
    DISABLE_VARIABLE,
    PluginSource,
    disabled_names,
    installed_sources,
    matches,
)
from covseg.core.entries import DatasetEntry, LoggerEntry, LossEntry, MetricEntry, ModelEntry
from covseg.core.errors import CovsegError
from covseg.core.tracing import enable_tracing, trace_requested
from covseg.files import one_line

if TYPE_CHECKING:
    import torch

EntryT = TypeVar("EntryT", ModelEntry, DatasetEntry, MetricEntry, LossEntry, LoggerEntry)
logger = logging.getLogger("covseg.plugins")


class _Kind(NamedTuple):
    hook: str
    entry_type: type
    listing: str
    plural: str
    name_all: bool = False
    """An unknown name's error lists every installed name (kinds with a handful of entries)."""


# What each kind of entry is called for users, the hook that yields it, and the command listing it.
_KINDS = {
    "model": _Kind("covseg_models", ModelEntry, "covseg models", "models"),
    "dataset": _Kind("covseg_datasets", DatasetEntry, "covseg data list", "datasets"),
    "metric": _Kind("covseg_metrics", MetricEntry, "covseg plugins", "metrics"),
    "loss": _Kind("covseg_losses", LossEntry, "covseg plugins", "losses", name_all=True),
    "logger": _Kind("covseg_loggers", LoggerEntry, "covseg plugins", "loggers", name_all=True),
}
KINDS = tuple(_KINDS)


def plural(kind: str) -> str:
    """``losses`` for ``loss``: how listings name a kind of entry."""
    return _KINDS[kind].plural


@dataclass(frozen=True)
class PluginInfo:
    """A plugin: its entry-point name, module and the distribution that installed it."""

    name: str
    module: str
    package: str
    version: str

    @property
    def label(self) -> str:
        """``name (package version)``, how messages name a plugin."""
        return f"{self.name} ({f'{self.package} {self.version}'.strip()})"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be imported, or whose hook raised or returned something else than
    entries; the rest of covseg keeps working. ``stage`` is ``import`` or the hook's name."""

    name: str
    package: str
    version: str
    error: str
    stage: str = "import"

    def line(self) -> str:
        """The failure as one line: which plugin, of which package, where, and the error."""
        where = "at import" if self.stage == "import" else f"in {self.stage}"
        package = f"{self.package} {self.version}".strip()
        return f"plugin {self.name} ({package}) failed {where}: {self.error}"


@dataclass(frozen=True)
class Provided(Generic[EntryT]):
    """An entry together with the plugin that provided it."""

    entry: EntryT
    plugin: PluginInfo

    @property
    def kind(self) -> str:
        return next(kind for kind, spec in _KINDS.items() if isinstance(self.entry, spec.entry_type))


@dataclass(frozen=True)
class Conflict:
    """One name offered by more than one entry (names and model aliases share one name space)."""

    kind: str
    name: str
    providers: tuple[Provided, ...]


class Registry:
    """All plugins of the ``covseg`` entry-point group and what they offer.

    ``entry_points`` replaces the installed ones (tests: ``Registry(entry_points=[])`` starts
    empty); ``disabled`` replaces ``$COVSEG_DISABLE_PLUGINS``; ``trace`` replaces
    ``$COVSEG_TRACE_PLUGINS``.
    """

    def __init__(
        self,
        entry_points: Iterable[importlib.metadata.EntryPoint] | None = None,
        disabled: Iterable[str] | None = None,
        trace: bool | None = None,
    ) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self.disabled: list[PluginInfo] = []
        self.unmatched_disabled: list[str] = []
        self._registered: list[tuple[object, PluginInfo]] = []
        self._provided: dict[str, list[Provided]] = {}
        if trace_requested() if trace is None else trace:
            enable_tracing(self.manager)
        if entry_points is None:
            sources = installed_sources()
        else:
            sources = [PluginSource.from_entry_point(entry_point) for entry_point in entry_points]
        disabled_items = disabled_names() if disabled is None else list(disabled)
        for source in sources:
            if any(matches(source, item) for item in disabled_items):
                self.disabled.append(PluginInfo(source.name, source.module, source.package, source.version))
                logger.debug("plugin %s (%s) disabled by %s", source.name, source.package, DISABLE_VARIABLE)
                continue
            self._load(source)
        self.unmatched_disabled = [
            item for item in disabled_items if not any(matches(source, item) for source in sources)
        ]

    # ---- loading ------------------------------------------------------------------------------
    def _load(self, source: PluginSource) -> None:
        try:
            plugin = source.entry_point.load()
        except (Exception, SystemExit) as error:  # any import fault, sys.exit included, is isolated
            self._fail(source.name, source.package, source.version, error, "import")
            return
        module = plugin.__name__ if isinstance(plugin, ModuleType) else source.module
        self._add(plugin, PluginInfo(source.name, module, source.package, source.version))

    def register(self, plugin: object, name: str, package: str = "<local>") -> None:
        """Register a plugin object directly (tests and notebooks); it behaves like an entry point."""
        self._add(plugin, PluginInfo(name, getattr(plugin, "__name__", name), package, ""))

    def _add(self, plugin: object, info: PluginInfo) -> None:
        try:
            self.manager.register(plugin, name=f"{info.package}:{info.name}")
        except (Exception, SystemExit) as error:  # e.g. a hook with arguments no spec has
            self._fail(info.name, info.package, info.version, error, "import")
            return
        logger.debug("loaded plugin %s from %s", info.label, info.module)
        self.plugins.append(info)
        self._registered.append((plugin, info))
        self._provided.clear()

    def _fail(self, name: str, package: str, version: str, error: BaseException, stage: str) -> None:
        failure = PluginFailure(name, package, version, error_text(error), stage)
        logger.debug("%s", failure.line())
        self.failures.append(failure)

    # ---- collecting entries -------------------------------------------------------------------
    def _collect(self, kind: str) -> list[Provided]:
        if kind in self._provided:
            return self._provided[kind]
        spec = _KINDS[kind]
        found: list[Provided] = []
        for plugin, info in self._registered:
            implementations = getattr(self.manager.hook, spec.hook).get_hookimpls()
            if not any(implementation.plugin is plugin for implementation in implementations):
                continue
            # Every other plugin is left out, run listeners and loggers too (see attached()).
            others = [other for other in self.manager.get_plugins() if other is not plugin]
            try:
                # Through pluggy (not impl.function()) so that its hook-call monitoring sees it.
                results = self.manager.subset_hook_caller(spec.hook, remove_plugins=others)()
            except (Exception, SystemExit) as error:  # a failing hook must not hide the others
                self._fail(info.name, info.package, info.version, error, spec.hook)
                continue
            entries, problem = _entries_of(results[0] if results else None, spec)
            if problem:
                self.failures.append(PluginFailure(info.name, info.package, info.version, problem, spec.hook))
            found.extend(Provided(entry, info) for entry in entries)
        found.sort(key=lambda provided: (provided.entry.name, provided.plugin.package, provided.plugin.name))
        self._provided[kind] = found
        return found

    def provided(self, kind: str) -> list[Provided]:
        """Every entry of a kind (one of :data:`KINDS`) with its plugin, sorted by name.

        Entries whose name is in conflict are all listed; :meth:`conflicts` says which.
        """
        return list(self._collect(kind))

    def _by_name(self, kind: str) -> dict[str, list[Provided]]:
        names: dict[str, list[Provided]] = {}
        for provided in self._collect(kind):
            for name in provided.entry.names:
                names.setdefault(name, []).append(provided)
        return names

    def conflicts(self, kind: str) -> list[Conflict]:
        """Names of a kind that more than one entry offers (as a name or a model alias)."""
        return [
            Conflict(kind, name, tuple(providers))
            for name, providers in sorted(self._by_name(kind).items())
            if len(providers) > 1
        ]

    def conflict_message(self, conflict: Conflict) -> str:
        """One line naming the plugins and packages that offer the name, and how to disable one."""
        plugins = list(dict.fromkeys(provided.plugin for provided in conflict.providers))
        if len(plugins) == 1:
            offered = f"offered twice by {plugins[0].label}"
        else:
            offered = "offered by " + " and by ".join(plugin.label for plugin in plugins)
        settings = " or ".join(f"{DISABLE_VARIABLE}={self.disable_key(plugin)}" for plugin in plugins)
        return f"{conflict.kind} name '{conflict.name}' is {offered}; disable one with {settings}"

    def disable_key(self, plugin: PluginInfo) -> str:
        """What ``COVSEG_DISABLE_PLUGINS`` takes to disable this plugin and no other."""
        same_name = [other for other in (*self.plugins, *self.disabled) if other.name == plugin.name]
        return plugin.name if len(same_name) <= 1 else f"{plugin.package}:{plugin.name}"

    def problems(self) -> list[str]:
        """Every failure, name conflict and unmatched ``COVSEG_DISABLE_PLUGINS`` item, one line each."""
        conflicts = [self.conflict_message(conflict) for kind in KINDS for conflict in self.conflicts(kind)]
        unmatched = [
            f"{DISABLE_VARIABLE} names '{item}', which is no installed plugin or package; "
            "see `covseg plugins`"
            for item in self.unmatched_disabled
        ]
        return [failure.line() for failure in self.failures] + conflicts + unmatched

    # ---- looking up ---------------------------------------------------------------------------
    def get(self, kind: str, name: str) -> Provided:
        """Look up one entry by name or alias.

        Raises CovsegError for an unknown name (with the close matches) and for a name that two
        plugins offer (naming both packages and the ``COVSEG_DISABLE_PLUGINS`` setting).
        """
        names = self._by_name(kind)
        providers = names.get(name, [])
        if len(providers) == 1:
            return providers[0]
        if providers:
            raise CovsegError(self.conflict_message(Conflict(kind, name, tuple(providers))))
        spec = _KINDS[kind]
        close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        failed = f" ({len(self.failures)} plugin failure(s): see `covseg plugins`)" if self.failures else ""
        if spec.name_all:
            installed = ", ".join(sorted(names)) or "none"
            raise CovsegError(f"unknown {kind} '{name}'.{hint} Installed {spec.plural}: {installed} "
                              f"(see `{spec.listing}`).{failed}")
        raise CovsegError(f"unknown {kind} '{name}'.{hint} See `{spec.listing}` for all names.{failed}")

    def model(self, name: str) -> ModelEntry:
        return self.get("model", name).entry

    def dataset(self, name: str) -> DatasetEntry:
        return self.get("dataset", name).entry

    def metric(self, name: str) -> MetricEntry:
        return self.get("metric", name).entry

    def loss(self, name: str) -> LossEntry:
        return self.get("loss", name).entry

    def logger(self, name: str) -> LoggerEntry:
        return self.get("logger", name).entry

    def models(self) -> list[ModelEntry]:
        return [provided.entry for provided in self.provided("model")]

    def datasets(self) -> list[DatasetEntry]:
        return [provided.entry for provided in self.provided("dataset")]

    def metrics(self) -> list[MetricEntry]:
        return [provided.entry for provided in self.provided("metric")]

    # ---- lifecycle ----------------------------------------------------------------------------
    def installed_plugins(self) -> list[tuple[object, PluginInfo]]:
        """The loaded plugin objects (modules) with their info, in loading order."""
        return list(self._registered)

    @contextlib.contextmanager
    def attached(self, listeners: Iterable[tuple[object, PluginInfo]]) -> Iterator[None]:
        """Register run-scoped plugin objects (a run's loggers, a command's progress bar) while the
        block runs, so that the lifecycle hooks reach them; they offer no entries.

        Raises CovsegError naming the object's plugin when pluggy refuses it (e.g. a hook method
        with an argument no hook specification has).
        """
        names: list[str] = []
        try:
            for plugin, info in listeners:
                name = f"{info.package}:{info.name}:{id(plugin)}"
                try:
                    self.manager.register(plugin, name=name)
                except Exception as error:  # pluggy's validation: a wrong hook name or argument
                    raise CovsegError(f"{info.label} cannot listen to this run: "
                                      f"{error_text(error)}") from None
                names.append(name)
            yield
        finally:
            for name in names:
                self.manager.unregister(name=name)


def _entries_of(returned: object, spec: _Kind) -> tuple[list, str]:
    """The entries a hook returned, and a one-line problem ("" if none) for what is not one."""
    expected = spec.entry_type.__name__
    if returned is None or isinstance(returned, (str, bytes, Mapping)) or not isinstance(returned, Iterable):
        return [], f"returned {_a(returned)}, not a list of {expected}"
    try:
        items = list(returned)
    except Exception as error:  # a generator that raises half-way
        return [], f"raised {one_line(error)}"
    entries = [item for item in items if isinstance(item, spec.entry_type)]
    wrong = [item for item in items if not isinstance(item, spec.entry_type)]
    if not wrong:
        return entries, ""
    return entries, f"returned {len(wrong)} item(s) that are not {expected}, e.g. {_a(wrong[0])}"




@cache
def get_registry() -> Registry:
    """The process-wide registry of installed plugins, loaded once on first use."""
    return Registry()


def create_model(
    name: str, num_classes: int = 4, in_channels: int = 3, pretrained: bool = False, **options: Any
) -> torch.nn.Module:
    """Build a registered model by name or alias, like ``timm.create_model``: ``create_model("unet")``,
    ``create_model("unet", base_channels=16)``.

    Returns a ``torch.nn.Module`` taking (N, in_channels, H, W) float input and returning logits
    (N, num_classes, H, W). ``options`` go to the model's factory (its options, see
    :func:`~covseg.core.calls.check_model_options`). Raises CovsegError for an unknown or ambiguous
    name, an option the model does not take, and a plugin fault (see :func:`build_model`).
    """
    return build_model(get_registry().get("model", name), num_classes, in_channels, pretrained, options)
