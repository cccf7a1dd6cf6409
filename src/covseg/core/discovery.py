"""Where plugins come from, and which ones the user switched off.

Plugins are the modules of the ``covseg`` entry-point group (pyproject.toml's
``[project.entry-points.covseg]`` is the list of covseg's own). A source checkout run without its
package metadata (``PYTHONPATH=src:plugins_builtin``) has no entry points for the built-ins; then
the ``covseg_builtin`` package is walked for the modules that implement a hook, which finds the
same list (tests/test_plugin_controls.py checks that against pyproject.toml).

``COVSEG_DISABLE_PLUGINS=name,...`` skips plugins before they are imported, like pytest's
``-p no:name``: each item is a plugin's entry-point name (``unet``), ``package:name``
(``covseg-unet-lite:unet-lite``) or a package (``covseg-unet-lite``: all its plugins).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import logging
import os
import pkgutil
import re
from dataclasses import dataclass
from pathlib import Path

from covseg.core import hookspecs

BUILTIN_PACKAGE = "covseg_builtin"
BUILTIN_DISTRIBUTION = "covseg"
DISABLE_VARIABLE = "COVSEG_DISABLE_PLUGINS"

logger = logging.getLogger("covseg.plugins")


@dataclass(frozen=True)
class PluginSource:
    """One plugin before it is imported: its entry point and the distribution that declares it."""

    entry_point: importlib.metadata.EntryPoint
    package: str
    version: str

    @property
    def name(self) -> str:
        return self.entry_point.name

    @property
    def module(self) -> str:
        return self.entry_point.value

    @property
    def qualified_name(self) -> str:
        return f"{self.package}:{self.name}"

    @classmethod
    def from_entry_point(cls, entry_point: importlib.metadata.EntryPoint) -> PluginSource:
        dist = entry_point.dist
        if dist is not None:
            return cls(entry_point, dist.metadata["Name"] or "?", dist.version or "?")
        return cls(entry_point, "?", "?")


def installed_sources() -> list[PluginSource]:
    """The entry points of the ``covseg`` group, plus the walked built-ins when theirs are absent."""
    sources = [
        PluginSource.from_entry_point(entry_point)
        for entry_point in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP)
    ]
    if not any(_is_builtin(source.module) for source in sources):
        builtins = builtin_sources()
        logger.debug("no entry points for %s: walked it and found %d plugin module(s)",
                     BUILTIN_PACKAGE, len(builtins))
        sources.extend(builtins)
    return sources


def builtin_sources() -> list[PluginSource]:
    """covseg's built-in plugins found by walking ``covseg_builtin``, without importing them.

    A plugin module is one that defines a top-level function named like a hook (``covseg_models``,
    ...); the network modules the factories import lazily define none. Each is named after its
    module (``torchvision_segmentation.py`` -> ``torchvision-segmentation``), as pyproject.toml
    names them.
    """
    spec = importlib.util.find_spec(BUILTIN_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return []
    from covseg import __version__

    sources = []
    packages = pkgutil.walk_packages(spec.submodule_search_locations, prefix=f"{BUILTIN_PACKAGE}.")
    for info in sorted(packages, key=lambda info: info.name):
        if info.ispkg:
            continue
        module_spec = importlib.util.find_spec(info.name)
        if module_spec is None or not module_spec.origin or not _implements_a_hook(Path(module_spec.origin)):
            continue
        name = info.name.rsplit(".", 1)[1].replace("_", "-")
        entry_point = importlib.metadata.EntryPoint(name, info.name, hookspecs.ENTRY_POINT_GROUP)
        sources.append(PluginSource(entry_point, BUILTIN_DISTRIBUTION, __version__))
    return sources


def _implements_a_hook(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    return any(
        isinstance(node, ast.FunctionDef) and node.name in hookspecs.HOOK_NAMES for node in tree.body
    )


def _is_builtin(module: str) -> bool:
    return module == BUILTIN_PACKAGE or module.startswith(f"{BUILTIN_PACKAGE}.")


def disabled_names(environ: os._Environ[str] | dict[str, str] | None = None) -> list[str]:
    """The items of ``$COVSEG_DISABLE_PLUGINS`` (comma-separated; blanks ignored)."""
    text = (os.environ if environ is None else environ).get(DISABLE_VARIABLE, "")
    return [item.strip() for item in text.split(",") if item.strip()]


def normalise_package(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Covseg_Unet.Lite`` -> ``covseg-unet-lite``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def matches(source: PluginSource, item: str) -> bool:
    """Whether a ``COVSEG_DISABLE_PLUGINS`` item names this plugin (see the module doc)."""
    package, separator, name = item.rpartition(":")
    if separator:
        return name == source.name and normalise_package(package) == normalise_package(source.package)
    return item == source.name or normalise_package(item) == normalise_package(source.package)
