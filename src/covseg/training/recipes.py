"""Training recipes: named sets of hyper-parameters that ``--recipe`` selects.

- ``reference`` is the published study's protocol, reproduced exactly: batch 8, Adam at a constant
  lr 1e-5 (no scheduler, no weight decay), 1500 epochs, plain cross-entropy, the four reference
  augmentations (random rotation, horizontal and vertical flips, Gaussian noise) and a seeded 80/20
  split.
- ``default`` is covseg's own recipe, measured against ``reference`` in benchmarks/RESULTS.md
  ("Recipes"): AdamW with a 100x larger learning rate, a linear warm-up then cosine decay,
  cross-entropy weighted by 1/sqrt(class frequency) plus a soft Dice loss over the three lesion
  classes (both give the rare classes weight: Dice weighs each lesion class equally whatever its
  pixel count, which is what the rare pleural effusion, 0.16 % of MedSeg's
  pixels, needs), and batch-norm statistics recomputed on the training slices before each
  validation. The last matters with a fast learning rate: batch norm's running averages lag the
  weights by ~10 steps, and on small data sets a model that segments well with batch statistics
  scored near zero in eval mode until they were recomputed (Wu & Johnson 2021, "precise BN").

A recipe only fills in the values the user did not give: options given explicitly win (see
:meth:`covseg.training.config.TrainConfig.from_recipe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from covseg.core.errors import CovsegError


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one recipe; ``values(epochs)`` gives them as TrainConfig fields."""

    name: str
    description: str
    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    weight_decay: float
    scheduler: str
    warmup_fraction: float
    loss: str
    class_weighting: str
    augmentation: str
    recalibrate_bn: bool
    val_fraction: float = 0.2

    def values(self, epochs: int | None = None) -> dict[str, Any]:
        """TrainConfig field values; warm-up epochs follow the final epoch count."""
        epochs = self.epochs if epochs is None else epochs
        warmup = math.ceil(epochs * self.warmup_fraction) if self.warmup_fraction > 0 else 0
        return {
            "recipe": self.name,
            "epochs": epochs,
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "scheduler": self.scheduler,
            "warmup_epochs": min(warmup, epochs),
            "loss": self.loss,
            "class_weighting": self.class_weighting,
            "augmentation": _augmentation(self.augmentation),
            "recalibrate_bn": self.recalibrate_bn,
            "val_fraction": self.val_fraction,
        }


def _augmentation(name: str) -> dict[str, Any]:
    from covseg.data.augment import AugmentationConfig

    if name == "reference":
        return AugmentationConfig.reference().to_dict()
    raise CovsegError(f"unknown augmentation preset '{name}'")  # a recipe-table bug, not user input


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            name="reference",
            description="The reference study: Adam lr 1e-5, no scheduler, batch 8, 1500 epochs, "
            "cross-entropy, rotation/flips/noise.",
            epochs=1500,
            batch_size=8,
            optimizer="adam",
            lr=1e-5,
            weight_decay=0.0,
            scheduler="none",
            warmup_fraction=0.0,
            loss="cross-entropy",
            class_weighting="none",
            augmentation="reference",
            recalibrate_bn=False,
        ),
        Recipe(
            name="default",
            description="covseg's recipe: AdamW lr 1e-3, warm-up + cosine decay, class-weighted "
            "cross-entropy + lesion Dice, precise batch norm, 150 epochs.",
            epochs=150,
            batch_size=8,
            optimizer="adamw",
            lr=1e-3,
            weight_decay=1e-4,
            scheduler="warmup-cosine",
            warmup_fraction=1 / 30,
            loss="cross-entropy+dice",
            class_weighting="sqrt-inverse-frequency",
            augmentation="reference",
            recalibrate_bn=True,
        ),
    )
}
"""Every recipe by name."""


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; one-line error naming the choices otherwise."""
    if name not in RECIPES:
        raise CovsegError(f"--recipe {name}: unknown recipe; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
