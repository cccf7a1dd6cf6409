"""Finds plugins through the ``covseg`` entry-point group and looks up their entries by name."""

from __future__ import annotations

import difflib
import importlib.metadata
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import Generic, TypeVar

import pluggy

from covseg.core import hookspecs
from covseg.core.entries import DatasetEntry, MetricEntry, ModelEntry
from covseg.core.errors import CovsegError
from covseg.files import one_line

EntryT = TypeVar("EntryT", ModelEntry, DatasetEntry, MetricEntry)

# What each kind of entry is called for users, the hook that yields it, and the command listing it.
_KINDS = {
    "model": ("covseg_models", "covseg models"),
    "dataset": ("covseg_datasets", "covseg data list"),
    "metric": ("covseg_metrics", "covseg plugins"),
}


@dataclass(frozen=True)
class PluginInfo:
    """A loaded plugin: its entry-point name, module and the distribution that installed it."""

    name: str
    module: str
    package: str
    version: str


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be loaded or whose hook raised; the rest of covseg keeps working."""

    name: str
    package: str
    version: str
    error: str


@dataclass(frozen=True)
class Provided(Generic[EntryT]):
    """An entry together with the plugin that provided it."""

    entry: EntryT
    plugin: PluginInfo


class Registry:
    """All plugins of the ``covseg`` entry-point group and what they offer.

    pluggy's ``load_setuptools_entrypoints`` stops at the first plugin that fails to import; covseg
    loads entry points one by one instead so that one broken plugin cannot take the CLI down.
    """

    def __init__(self, entry_points: list[importlib.metadata.EntryPoint] | None = None) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.manager.add_hookspecs(hookspecs)
        self.plugins: list[PluginInfo] = []
        self.failures: list[PluginFailure] = []
        self._info_by_plugin: dict[int, PluginInfo] = {}
        self._entries: dict[str, dict[str, Provided]] = {}
        if entry_points is None:
            entry_points = list(importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP))
        for entry_point in entry_points:
            self._load(entry_point)

    def _load(self, entry_point: importlib.metadata.EntryPoint) -> None:
        dist = entry_point.dist
        package = dist.metadata["Name"] if dist else "?"
        version = dist.version if dist else "?"
        try:
            plugin = entry_point.load()
            self.manager.register(plugin, name=f"{package}:{entry_point.name}")
        except Exception as error:  # any import error must be isolated
            self.failures.append(PluginFailure(entry_point.name, package, version, one_line(error)))
            return
        module = plugin.__name__ if isinstance(plugin, ModuleType) else entry_point.value
        info = PluginInfo(entry_point.name, module, package, version)
        self.plugins.append(info)
        self._info_by_plugin[id(plugin)] = info

    def register(self, plugin: object, name: str, package: str = "<local>") -> None:
        """Register a plugin object directly (tests and notebooks); it behaves like an entry point."""
        self.manager.register(plugin, name=name)
        info = PluginInfo(name, getattr(plugin, "__name__", name), package, "")
        self.plugins.append(info)
        self._info_by_plugin[id(plugin)] = info
        self._entries.clear()

    def _collect(self, kind: str) -> dict[str, Provided]:
        if kind in self._entries:
            return self._entries[kind]
        hook_name, _ = _KINDS[kind]
        found: dict[str, Provided] = {}
        for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
            info = self._info_by_plugin[id(impl.plugin)]
            try:
                entries = list(impl.function())
            except Exception as error:  # a failing hook must not hide the others
                self.failures.append(
                    PluginFailure(info.name, info.package, info.version, one_line(error))
                )
                continue
            for entry in entries:
                if entry.name in found:
                    other = found[entry.name].plugin
                    raise CovsegError(
                        f"{kind} name '{entry.name}' is offered twice: by {other.package} "
                        f"({other.module}) and by {info.package} ({info.module}); uninstall one"
                    )
                found[entry.name] = Provided(entry, info)
        self._entries[kind] = dict(sorted(found.items()))
        return self._entries[kind]

    def provided(self, kind: str) -> list[Provided]:
        """Every entry of a kind ("model", "dataset" or "metric") with its plugin, sorted by name."""
        return list(self._collect(kind).values())

    def get(self, kind: str, name: str) -> Provided:
        """Look up one entry by name; an unknown name raises with the close matches."""
        entries = self._collect(kind)
        if name in entries:
            return entries[name]
        _, listing_command = _KINDS[kind]
        close = difflib.get_close_matches(name, list(entries), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CovsegError(f"unknown {kind} '{name}'.{hint} See `{listing_command}` for all names.")

    def model(self, name: str) -> ModelEntry:
        return self.get("model", name).entry

    def dataset(self, name: str) -> DatasetEntry:
        return self.get("dataset", name).entry

    def metric(self, name: str) -> MetricEntry:
        return self.get("metric", name).entry

    def models(self) -> list[ModelEntry]:
        return [provided.entry for provided in self.provided("model")]

    def datasets(self) -> list[DatasetEntry]:
        return [provided.entry for provided in self.provided("dataset")]

    def metrics(self) -> list[MetricEntry]:
        return [provided.entry for provided in self.provided("metric")]


@cache
def get_registry() -> Registry:
    """The process-wide registry of installed plugins, loaded once on first use."""
    return Registry()


def create_model(
    name: str, num_classes: int = 4, in_channels: int = 3, pretrained: bool = False
):
    """Build a registered model by name, like ``timm.create_model``: ``create_model("unet")``."""
    entry = get_registry().model(name)
    return entry.factory(num_classes=num_classes, in_channels=in_channels, pretrained=pretrained)
