"""The plugins a run uses, looked up before any data is read or run folder made.

The model (and its ``--model-option`` options), the ``--loss`` and the ``--log`` loggers: an
unknown name, an option the model does not take or a logger whose package is missing stops the
run here, in one line, before anything is written. ``covseg benchmark`` checks its settings the
same way before its first pair.
"""

from __future__ import annotations

from dataclasses import dataclass

from covseg.core.calls import check_model_options, start_logger
from covseg.core.entries import LossEntry, ModelEntry
from covseg.core.errors import CovsegError
from covseg.core.registry import PluginInfo, Provided, get_registry
from covseg.training.config import TrainConfig


@dataclass
class RunPlugins:
    """The model and loss entries of a run, and its started loggers with the plugin naming each."""

    model: Provided[ModelEntry]
    loss: Provided[LossEntry]
    loggers: list[tuple[object, PluginInfo]]


def resolve_plugins(config: TrainConfig) -> RunPlugins:
    """Look up ``config``'s model, loss and loggers, check the model options, start the loggers.

    Raises CovsegError (one line) for an unknown name (with the close matches; for losses and
    loggers, the installed ones), an option the model does not take (naming it and the ones it
    takes), and a logger that cannot start (e.g. ``pip install 'covseg[tensorboard]'``).
    """
    registry = get_registry()
    model = registry.get("model", config.model)
    try:
        check_model_options(model, config.model_options)
    except CovsegError as error:
        raise CovsegError(f"{config.where('model_options')}: {error}") from None
    loss = registry.get("loss", config.loss)
    loggers = []
    for name in config.loggers:
        provided = registry.get("logger", name)
        plugin = provided.plugin
        info = PluginInfo(name, plugin.module, plugin.package, plugin.version)
        loggers.append((start_logger(provided), info))
    return RunPlugins(model, loss, loggers)
