"""`covseg models` and `covseg plugins`: what is installed, who provides it, and what went wrong.

Neither builds a model nor imports torch, unless ``covseg models --params`` asks for parameter
counts (each model then built on the meta device, guarded: a failing factory is one row's note).
"""

from __future__ import annotations

import inspect
from typing import Annotated

from rich import box
from rich.text import Text

from covseg.commands._common import console, option, user_errors, warn
from covseg.core.calls import build_model, model_options
from covseg.core.discovery import DISABLE_VARIABLE
from covseg.core.errors import CovsegError
from covseg.core.registry import KINDS, Provided, Registry, get_registry, plural
from covseg.terminal import Table, join, styled

PARAMS_HELP = "Also count each model's parameters (builds each model on the meta device: slower)."


def count_parameters(provided: Provided) -> int:
    """Parameters of a model built on the meta device: no memory, no initialisation cost.

    Raises CovsegError (one line naming the model and package) when the factory fails.
    """
    import torch

    with torch.device("meta"):
        model = build_model(provided, num_classes=4, in_channels=3, pretrained=False)
    return sum(parameter.numel() for parameter in model.parameters())


def _table(title: str) -> Table:
    # No vertical rules: at 80 columns every character goes to the names and descriptions.
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, show_lines=True)


@user_errors
def models(
    params: Annotated[bool, option("--params", help=PARAMS_HELP)] = False,
) -> None:
    """List the segmentation models of all installed plugins: name, aliases, family, provider."""
    registry = get_registry()
    in_conflict = {conflict.name for conflict in registry.conflicts("model")}
    table = _table("covseg models")
    table.add_column("model", no_wrap=True)
    table.add_column("description and provider (module, package)", overflow="fold")
    build_errors: list[str] = []
    for provided in registry.provided("model"):
        entry, plugin = provided.entry, provided.plugin
        lines = [styled(entry.name, "bold")]
        lines += [styled(f"alias {alias}", "dim") for alias in entry.aliases]
        lines.append(styled(f"family {entry.family}", "dim"))
        options = model_options(provided)
        if options:
            shown = ", ".join(name if default is inspect.Parameter.empty else f"{name}={default!r}"
                              for name, default in options.items())
            lines.append(styled(f"options: {shown}", "dim"))
        if params:
            lines.append(_params_line(provided, build_errors))
        if in_conflict & set(entry.names):
            lines.append(styled("name conflict", "bold red"))
        provider = styled(f"{plugin.module} ({plugin.package})", "dim")
        table.add_row(join(*_lines(lines)), join(entry.description, "\n", provider))
    console.print(table)
    for line in build_errors:
        warn(line)
    warn_plugin_problems(registry)


def _lines(parts: list[Text]) -> list[Text | str]:
    joined: list[Text | str] = []
    for part in parts:
        joined += [part, "\n"]
    return joined[:-1]


def _params_line(provided: Provided, errors: list[str]) -> Text:
    try:
        return styled(f"{count_parameters(provided) / 1e6:.1f} M params", "dim")
    except CovsegError as error:
        errors.append(str(error))
        return styled("params: build failed", "red")


@user_errors
def plugins() -> None:
    """List plugins with their versions and what they provide, and those disabled or failing."""
    registry = get_registry()
    provides: dict[tuple[str, str], dict[str, list[str]]] = {}
    for kind in KINDS:
        for provided in registry.provided(kind):
            by_kind = provides.setdefault((provided.plugin.package, provided.plugin.name), {})
            by_kind.setdefault(kind, []).append(provided.entry.name)
    table = _table("covseg plugins")
    table.add_column("plugin (package)", no_wrap=True)
    table.add_column("module and what it provides", overflow="fold")
    for info in registry.plugins:
        by_kind = provides.get((info.package, info.name), {})
        offered = "; ".join(f"{plural(kind)}: {', '.join(names)}"
                            for kind, names in by_kind.items()) or "nothing"
        table.add_row(_plugin_cell(info.name, info.package, info.version),
                      join(styled(info.module, "dim"), "\n", offered))
    for info in registry.disabled:
        disabled = styled(f"disabled by {DISABLE_VARIABLE}", "yellow")
        table.add_row(_plugin_cell(info.name, info.package, info.version),
                      join(styled(info.module, "dim"), "\n", disabled))
    for failure in registry.failures:
        where = "at import" if failure.stage == "import" else f"in {failure.stage}"
        table.add_row(_plugin_cell(failure.name, failure.package, failure.version),
                      styled(f"failed {where}: {failure.error}", "red"))
    console.print(table)
    warn_plugin_problems(registry)


def _plugin_cell(name: str, package: str, version: str) -> Text:
    return join(styled(name, "bold"), "\n", styled(f"{package} {version}".strip(), "dim"))


def warn_plugin_problems(registry: Registry | None = None) -> None:
    """One warning line per plugin failure, name conflict and unmatched COVSEG_DISABLE_PLUGINS item."""
    for line in (registry or get_registry()).problems():
        warn(line)
