"""`covseg models` and `covseg plugins`: what is installed and who provides it."""

from __future__ import annotations

from rich.table import Table

from covseg.commands._common import console, user_errors, warn
from covseg.core.registry import get_registry


def count_parameters(factory) -> int:
    """Parameters of a model built on the meta device: no memory, no initialisation cost."""
    import torch

    with torch.device("meta"):
        model = factory(num_classes=4, in_channels=3, pretrained=False)
    return sum(parameter.numel() for parameter in model.parameters())


@user_errors
def models() -> None:
    """List the segmentation models of all installed plugins."""
    registry = get_registry()
    table = Table(title="covseg models")
    table.add_column("name", no_wrap=True, style="bold")
    table.add_column("family", no_wrap=True)
    table.add_column("params (M)", justify="right", no_wrap=True)
    for column in ("package", "module", "description"):
        table.add_column(column)
    for provided in registry.provided("model"):
        entry = provided.entry
        params = f"{count_parameters(entry.factory) / 1e6:.1f}"
        table.add_row(entry.name, entry.family, params, provided.plugin.package, provided.plugin.module,
                      entry.description)
    console.print(table)
    _warn_failures()


@user_errors
def plugins() -> None:
    """List loaded plugins with their versions and what they provide, and plugins that failed."""
    registry = get_registry()
    provides: dict[str, list[str]] = {}
    for kind in ("model", "dataset", "metric"):
        for provided in registry.provided(kind):
            provides.setdefault(provided.plugin.module, []).append(f"{kind} {provided.entry.name}")
    table = Table(title="covseg plugins")
    for column in ("plugin", "package", "version", "module", "provides"):
        table.add_column(column)
    for info in registry.plugins:
        table.add_row(info.name, info.package, info.version, info.module,
                      ", ".join(provides.get(info.module, [])) or "-")
    console.print(table)
    if registry.failures:
        failed = Table(title="plugins that failed to load", title_style="bold red")
        for column in ("plugin", "package", "version", "error"):
            failed.add_column(column)
        for failure in registry.failures:
            failed.add_row(failure.name, failure.package, failure.version, failure.error)
        console.print(failed)


def _warn_failures() -> None:
    failures = get_registry().failures
    if failures:
        names = ", ".join(f"{failure.name} ({failure.package})" for failure in failures)
        warn(f"{len(failures)} plugin(s) failed to load: {names}; see `covseg plugins`")
