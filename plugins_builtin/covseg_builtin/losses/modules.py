"""The built-in loss modules: cross-entropy (the reference study's) and cross-entropy + soft lesion Dice.

Losses are computed in float32 whatever the autocast precision: a softmax over bf16 logits loses
the small probabilities Dice and cross-entropy depend on. Imported by segmentation_losses.py's
build functions only (this module imports torch).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F


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
