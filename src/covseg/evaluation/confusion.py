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


def slice_confusion_matrices(
    prediction: torch.Tensor, target: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """One confusion matrix per slice: (N, C, C) int64 from (N, H, W) predictions and targets.

    Their sum over N is :func:`confusion_matrix` of the batch. Kept per slice so that the metrics of
    any resample of the slices are sums (:mod:`covseg.evaluation.bootstrap`); C x C integers per
    slice cost nothing next to the slice. Labels outside 0..C-1 are refused.
    """
    if prediction.shape != target.shape or prediction.ndim < 1:
        raise CovsegError(
            f"slice_confusion_matrices: prediction shape {tuple(prediction.shape)} differs from "
            f"target shape {tuple(target.shape)}"
        )
    count = prediction.shape[0]
    cells = num_classes * num_classes
    prediction = prediction.reshape(count, -1).long()
    target = target.reshape(count, -1).long()
    valid = (target >= 0) & (target < num_classes) & (prediction >= 0) & (prediction < num_classes)
    if not bool(valid.all()):
        invalid = int((~valid).sum())
        raise CovsegError(
            f"slice_confusion_matrices: {invalid} pixel(s) hold labels outside 0..{num_classes - 1}; "
            f"masks and predictions must be class indices of a {num_classes}-class model"
        )
    offsets = torch.arange(count, device=prediction.device).unsqueeze(1) * cells
    index = offsets + target * num_classes + prediction
    counts = torch.bincount(index.reshape(-1), minlength=count * cells)
    return counts.reshape(count, num_classes, num_classes)
