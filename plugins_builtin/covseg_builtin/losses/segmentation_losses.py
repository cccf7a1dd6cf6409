"""Plugin: covseg's two training losses (modules in modules.py, imported when a loss is built).

``cross-entropy`` is the reference study's loss; ``cross-entropy+dice`` is covseg's default
recipe's (see covseg.training.recipes for why). Registered through ``[project.entry-points.covseg]``
in covseg's pyproject.toml, like any plugin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from covseg.plugins import CovsegError, LossEntry, hookimpl

if TYPE_CHECKING:
    import torch
    from torch import nn


def build_cross_entropy(num_classes: int, class_weights: torch.Tensor | None) -> nn.Module:
    from covseg_builtin.losses.modules import Float32CrossEntropy

    return Float32CrossEntropy(weight=class_weights)


def build_cross_entropy_dice(num_classes: int, class_weights: torch.Tensor | None) -> nn.Module:
    from covseg_builtin.losses.modules import CrossEntropyDiceLoss

    if num_classes < 2:
        raise CovsegError("--loss cross-entropy+dice needs at least one lesion class")
    return CrossEntropyDiceLoss(num_classes, class_weights)


@hookimpl
def covseg_losses() -> list[LossEntry]:
    return [
        LossEntry(
            "cross-entropy",
            build_cross_entropy,
            "Pixel-wise cross-entropy in float32 (the reference study's); weighted by --class-weighting.",
        ),
        LossEntry(
            "cross-entropy+dice",
            build_cross_entropy_dice,
            "Cross-entropy weighted by --class-weighting, plus soft Dice over the lesion classes 1-3, "
            "each lesion class weighing the same.",
        ),
    ]
