"""A run's loss: the ``--loss`` entry of a loss plugin, with class weights from the training masks.

The losses themselves are plugins (``covseg_losses``; covseg's ``cross-entropy`` and
``cross-entropy+dice`` are in ``covseg_builtin/losses/``); this module builds one by name and
computes the cross-entropy class weights of ``--class-weighting``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from covseg.core.calls import build_loss as build_loss_entry
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.training.config import CLASS_WEIGHTINGS


def build_loss(name: str, num_classes: int, class_weights: torch.Tensor | None = None) -> nn.Module:
    """The loss module of the installed loss called ``name``.

    Raises CovsegError for an unknown name (with the close matches and the installed losses) and
    for a plugin fault (naming the loss and its package).
    """
    return build_loss_entry(get_registry().get("loss", name), num_classes, class_weights)


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
