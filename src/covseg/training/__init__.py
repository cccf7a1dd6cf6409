"""Training: recipes, the epoch loop, resumable runs and torch.distributed.

The public API::

    from covseg.training import TrainConfig, train

    run_dir = train(TrainConfig.from_recipe("unet", recipe="default", epochs=5, image_size=96))

Modules: ``config`` (TrainConfig, config.json), ``recipes`` (``reference`` and ``default``),
``losses``, ``optim`` (optimisers and schedules), ``loaders`` (split and data loaders), ``loop``
(one epoch), ``runs`` (run folder, metrics.jsonl, RNG state), ``distributed`` (torchrun/DDP),
``report`` (progress bar and tables), ``api`` (:func:`train`).
"""

from covseg.training.api import TrainingInterrupted, train
from covseg.training.config import TrainConfig
from covseg.training.recipes import RECIPES, Recipe, get_recipe

__all__ = ["RECIPES", "Recipe", "TrainConfig", "TrainingInterrupted", "get_recipe", "train"]
