"""Training recipes (named sets of settings that ``--recipe`` selects) and the reference study.

A recipe is data of the same shape as a ``--config`` file: TrainConfig setting names and values.
It fills in what neither an explicit option nor the config file sets; a setting it leaves out
keeps the TrainConfig field default (see :meth:`covseg.training.config.TrainConfig.resolve`).

- ``reference`` is the published study's protocol, reproduced exactly: batch 8, Adam at a constant
  lr 1e-5 (no scheduler, no weight decay), 1500 epochs, plain cross-entropy, the four reference
  augmentations (random rotation, horizontal and vertical flips, Gaussian noise) and a seeded 80/20
  split.
- ``default`` is covseg's own recipe; its values are the TrainConfig field defaults, measured
  against ``reference`` in benchmarks/RESULTS.md ("Recipes"): AdamW with a 100x larger learning
  rate, a linear warm-up then cosine decay, cross-entropy weighted by 1/sqrt(class frequency) plus
  a soft Dice loss over the three lesion classes (both give the rare classes weight: Dice weighs
  each lesion class equally whatever its pixel count, which is what the rare pleural effusion,
  0.16 % of MedSeg's pixels, needs), and batch-norm statistics recomputed on the training slices
  before each validation. The last matters with a fast learning rate: batch norm's running
  averages lag the weights by ~10 steps, and on small data sets a model that segments well with
  batch statistics scored near zero in eval mode until they were recomputed (Wu & Johnson 2021,
  "precise BN").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from covseg.core.errors import CovsegError
from covseg.training.settings import format_number


@dataclass(frozen=True)
class Recipe:
    """A named set of TrainConfig settings (``values``), checked like a config file when used."""

    name: str
    description: str
    values: Mapping[str, Any] = field(default_factory=dict)


REFERENCE_RECIPE = Recipe(
    name="reference",
    description="The reference study: Adam lr 1e-5, no scheduler, batch 8, 1500 epochs, cross-entropy, "
    "rotation/flips/noise, 80/20 split.",
    values={
        "epochs": 1500,
        "batch_size": 8,
        "optimizer": "adam",
        "lr": 1e-5,
        "weight_decay": 0.0,
        "scheduler": "none",
        "loss": "cross-entropy",
        "class_weighting": "none",
        "augmentation": "reference",
        "recalibrate_bn": False,  # the study validated with batch norm's running averages
        "val_fraction": 0.2,
    },
)

RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        REFERENCE_RECIPE,
        Recipe(
            name="default",
            description="covseg's recipe (the TrainConfig defaults): AdamW lr 1e-3, warm-up + cosine "
            "decay, class-weighted cross-entropy + lesion Dice, precise batch norm, 150 epochs.",
        ),
    )
}
"""Every recipe by name."""

DEFAULT_RECIPE = "default"


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; one-line error naming the choices otherwise."""
    if name not in RECIPES:
        raise CovsegError(f"--recipe {name}: unknown recipe; choose one of {', '.join(RECIPES)}")
    return RECIPES[name]


# ---- the reference study --------------------------------------------------------------------------
REFERENCE_MODELS = (
    "unet",
    "deeplabv3plus-resnet101",
    "deeplabv3plus-xception",
    "fcn-resnet50",
    "fcn-resnet101",
    "deeplabv3-resnet50",
    "deeplabv3-resnet101",
)
"""The seven architectures of the reference study, by their canonical covseg model names."""

REFERENCE_MIOU = (0.70, 0.72)
"""The validation mIoU range the study reported for all seven models (no per-model numbers)."""
REFERENCE_PIXEL_ACCURACY = 0.97
"""The validation pixel accuracy the study reported ("~0.97") for all seven models."""
REFERENCE_DATA = "the 100-slice MedSeg set"


def _protocol(values: Mapping[str, Any]) -> str:
    """The reference recipe in words, e.g. "80/20 split, batch 8, Adam lr 1e-5, 1500 epochs"."""
    train_share = round((1 - values["val_fraction"]) * 100)
    return (f"{train_share}/{100 - train_share} split, batch {values['batch_size']}, "
            f"{values['optimizer'].capitalize()} lr {format_number(values['lr'])}, "
            f"{values['epochs']} epochs, "
            "rotation/flip/noise augmentation")


REFERENCE_STUDY = {
    "label": f"reference study (theirs), each of the {len(REFERENCE_MODELS)} models",
    "miou": f"{REFERENCE_MIOU[0]:.2f}-{REFERENCE_MIOU[1]:.2f}",
    "pixel_accuracy": f"~{REFERENCE_PIXEL_ACCURACY:.2f}",
    "note": (
        f"The reference study trained all {len(REFERENCE_MODELS)} models on {REFERENCE_DATA} "
        f"({_protocol(REFERENCE_RECIPE.values)}) and reported validation mIoU "
        f"{REFERENCE_MIOU[0]:.2f}-{REFERENCE_MIOU[1]:.2f} and pixel accuracy ~{REFERENCE_PIXEL_ACCURACY:.2f} "
        f"for all {len(REFERENCE_MODELS)}; it gave no per-model numbers, so its range stands as one row. "
        "These are the study's numbers, not measured here."
    ),
}
"""The study's published figures as the benchmark's report shows them (one row for all seven)."""
