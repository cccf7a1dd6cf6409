"""Training losses: cross-entropy (the reference study's) and cross-entropy + soft lesion Dice.

Losses are computed in float32 whatever the autocast precision: a softmax over bf16 logits loses
the small probabilities Dice and cross-entropy depend on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from covseg.core.errors import CovsegError
from covseg.training.config import CLASS_WEIGHTINGS, LOSSES


class SoftDiceLoss(nn.Module):
    """1 - mean soft Dice over ``classes``, summed over the whole batch.

    Each listed class counts equally whatever its pixel count, so a rare class (pleural effusion)
    pulls as hard as a common one. Summing over the batch before dividing keeps a class that is
    absent from one slice from producing a 0/0; ``smooth`` keeps a class absent from the whole
    batch at a finite loss that rewards predicting none of it.
    """

    def __init__(self, classes: Sequence[int], smooth: float = 1.0):
        super().__init__()
        self.classes = list(classes)
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probabilities = logits.float().softmax(dim=1)
        one_hot = F.one_hot(target, probabilities.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
        dims = (0, 2, 3)
        intersection = (probabilities * one_hot).sum(dims)
        total = probabilities.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        return 1 - dice[self.classes].mean()


class CrossEntropyDiceLoss(nn.Module):
    """Cross-entropy (pixel-wise calibration) plus soft Dice over the lesion classes (overlap)."""

    def __init__(self, num_classes: int, class_weights: torch.Tensor | None = None, dice_weight: float = 1.0):
        super().__init__()
        self.cross_entropy = nn.CrossEntropyLoss(weight=class_weights)
        self.dice = SoftDiceLoss(classes=range(1, num_classes))
        self.dice_weight = dice_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return self.cross_entropy(logits, target) + self.dice_weight * self.dice(logits, target)


class Float32CrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` on float32 logits."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(logits.float(), target)


def build_loss(name: str, num_classes: int, class_weights: torch.Tensor | None = None) -> nn.Module:
    """The loss module called ``name`` (one of :data:`LOSSES`)."""
    if name == "cross-entropy":
        return Float32CrossEntropy(weight=class_weights)
    if name == "cross-entropy+dice":
        if num_classes < 2:
            raise CovsegError("--loss cross-entropy+dice needs at least one lesion class")
        return CrossEntropyDiceLoss(num_classes, class_weights)
    raise CovsegError(f"loss '{name}' is unknown; choose one of {', '.join(LOSSES)}")


def class_weights_from_masks(
    masks: Sequence[np.ndarray], num_classes: int, weighting: str
) -> torch.Tensor | None:
    """Cross-entropy class weights from the training masks' pixel counts, or None for ``"none"``.

    ``sqrt-inverse-frequency``: weight ∝ 1/sqrt(frequency), normalised so that the pixel-weighted
    mean weight is 1 (the loss keeps its scale), capped at 50x the background's so that a class
    with a handful of pixels cannot dominate. Classes without training pixels get weight 1.
    """
    if weighting == "none":
        return None
    if weighting != "sqrt-inverse-frequency":
        raise CovsegError(
            f"class weighting '{weighting}' is unknown; choose one of {', '.join(CLASS_WEIGHTINGS)}"
        )
    counts = np.zeros(num_classes, dtype=np.float64)
    for mask in masks:
        counts += np.bincount(np.asarray(mask).reshape(-1), minlength=num_classes)[:num_classes]
    present = counts > 0
    frequency = counts / counts.sum()
    weights = np.ones(num_classes)
    weights[present] = 1.0 / np.sqrt(frequency[present])
    weights = np.minimum(weights, 50.0 * weights[0] if present[0] else np.inf)
    weights /= float((weights * frequency).sum()) if present.any() else 1.0
    return torch.tensor(weights, dtype=torch.float32)
