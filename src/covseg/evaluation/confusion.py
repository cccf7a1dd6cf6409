"""The confusion matrix every covseg metric is computed from."""

from __future__ import annotations

import torch

from covseg.core.errors import CovsegError


def confusion_matrix(prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Pixel counts (C, C) int64, rows the true class and columns the predicted class.

    One ``torch.bincount`` over ``num_classes * target + prediction`` on the tensors' own device, so
    a GPU evaluation never copies label maps to the host. Sum the result over batches (and over
    processes) to get the matrix of a whole data set. Labels outside 0..C-1 are refused: they would
    silently land in another class's cell.
    """
    if prediction.shape != target.shape:
        raise CovsegError(
            f"confusion_matrix: prediction shape {tuple(prediction.shape)} differs from "
            f"target shape {tuple(target.shape)}"
        )
    prediction = prediction.reshape(-1).long()
    target = target.reshape(-1).long()
    valid = (target >= 0) & (target < num_classes) & (prediction >= 0) & (prediction < num_classes)
    # Invalid pixels go to one overflow bin, so that checking them costs one host sync, not four.
    index = torch.where(valid, target * num_classes + prediction, num_classes * num_classes)
    counts = torch.bincount(index, minlength=num_classes * num_classes + 1)
    invalid = int(counts[-1])
    if invalid:
        raise CovsegError(
            f"confusion_matrix: {invalid} pixel(s) hold labels outside 0..{num_classes - 1}; "
            f"masks and predictions must be class indices of a {num_classes}-class model"
        )
    return counts[:-1].reshape(num_classes, num_classes)
