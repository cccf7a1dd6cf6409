"""Tiny third-party plugins for tests: real distributions (a ``.dist-info`` with entry points) and
their modules in one folder, found by ``importlib.metadata`` once the folder is on ``sys.path``."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from covseg.core.registry import get_registry


def write_distribution(folder: Path, package: str, version: str, modules: dict[str, str],
                       entry_points: dict[str, str] | None = None) -> None:
    """Write ``package``'s metadata and its ``modules`` ({module name: source}) into ``folder``.

    ``entry_points`` ({entry-point name: module}) defaults to one entry point per module, named
    after it.
    """
    entry_points = entry_points or {module.replace("_", "-"): module for module in modules}
    dist_info = folder / f"{package.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, module in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[covseg]\n{lines}")
    for module, source in modules.items():
        (folder / f"{module}.py").write_text(textwrap.dedent(source))


@contextmanager
def installed(monkeypatch: pytest.MonkeyPatch, folder: Path) -> Iterator[None]:
    """Put ``folder``'s distributions beside the installed ones; the process-wide registry is
    rebuilt to see them, and forgotten (with the modules they imported) afterwards."""
    before = set(sys.modules)
    monkeypatch.syspath_prepend(str(folder))
    get_registry.cache_clear()
    try:
        yield
    finally:
        get_registry.cache_clear()
        for name in set(sys.modules) - before:
            module = sys.modules.get(name)
            if str(folder) in str(getattr(module, "__file__", "") or ""):
                del sys.modules[name]
