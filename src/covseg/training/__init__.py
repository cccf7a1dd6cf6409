"""Training: recipes, the epoch loop, resumable runs and torch.distributed.

The public API::

    from covseg.training import TrainConfig, train

    run_dir = train(TrainConfig.from_recipe("unet", recipe="default", epochs=5, image_size=96))

Modules: ``settings`` (what each setting is), ``config`` (TrainConfig, config.json),
``config_file`` (``--config FILE``), ``recipes`` (``reference`` and ``default``, the reference
study's figures), ``losses`` (the ``--loss`` plugin entry, class weights), ``run_plugins`` (the
model, loss and loggers of a run, checked before anything is written), ``optim`` (optimisers and
schedules), ``loaders`` (split and data loaders), ``batchnorm`` (the batch-of-one check), ``loop``
(one epoch), ``samples`` (the validation slices the lifecycle hooks see), ``state`` (RNG state),
``distributed`` (torchrun/DDP), ``held_out`` (the test set and the final validation/test scores),
``cross_validation`` (``--folds``: fold runs, out-of-fold score, ensemble), ``api`` (:func:`train`).
What a run shows on the terminal is the command line's (:mod:`covseg.commands._progress`).

Names are imported on first use, so that the command line can read the settings without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainingInterrupted": "covseg.training.api",
    "train": "covseg.training.api",
    "TrainConfig": "covseg.training.config",
    "RECIPES": "covseg.training.recipes",
    "Recipe": "covseg.training.recipes",
    "get_recipe": "covseg.training.recipes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'covseg.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
