"""Evaluate a model on a data loader: one confusion matrix for the whole set, then every metric."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
import torch.distributed as dist

from covseg.core.errors import CovsegError
from covseg.evaluation.confusion import confusion_matrix
from covseg.evaluation.metrics import compute_metrics

BatchCallback = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]
"""``on_batch(images, masks, predictions)``: tensors on the evaluation device, in loader order."""


def predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class index per pixel (N, H, W) from logits (N, C, H, W).

    A NaN logit would win ``argmax`` (NaN compares greater than everything there); it is treated as
    the lowest score instead, so a numerically broken pixel falls back to another class and a fully
    broken one to background (0) rather than to a lesion.
    """
    logits = logits.float()
    return logits.masked_fill(torch.isnan(logits), float("-inf")).argmax(dim=1)


def evaluate_model(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    num_classes: int,
    autocast_dtype: torch.dtype | None = None,
    on_batch: BatchCallback | None = None,
    *,
    channels_last: bool = False,
) -> tuple[np.ndarray, dict[str, float]]:
    """Run ``model`` over ``loader`` (image (N, 3, H, W), mask (N, H, W) batches) and score it.

    Returns ``(confusion, metrics)``: the (C, C) int64 pixel counts of the whole set and
    :func:`~covseg.evaluation.metrics.compute_metrics` of them. Runs under ``no_grad`` in eval mode
    and restores the model's previous mode. ``autocast_dtype`` (e.g. ``torch.bfloat16``, on any
    device) runs the forward pass under autocast; the logits are cast to float32 before the class
    is chosen, so the metrics are counted as in float32. ``channels_last`` hands the model NHWC
    images (pass the model in that layout too). When ``torch.distributed`` is initialised, each
    process evaluates its own shard and the confusion matrices are summed over all processes, so
    every rank returns the same metrics of the whole set.
    """
    was_training = model.training
    model.eval()
    confusion = torch.zeros((num_classes, num_classes), dtype=torch.int64, device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    try:
        with torch.no_grad():
            for images, masks in loader:
                images = images.to(device, non_blocking=True, memory_format=memory_format)
                masks = masks.to(device, non_blocking=True)
                autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                            else contextlib.nullcontext())
                with autocast:
                    logits = model(images)
                if logits.ndim != 4 or logits.shape[1] != num_classes:
                    raise CovsegError(
                        f"the model returned logits of shape {tuple(logits.shape)}, "
                        f"expected (N, {num_classes}, H, W)"
                    )
                predictions = predict_labels(logits)
                confusion += confusion_matrix(predictions, masks, num_classes)
                if on_batch is not None:
                    on_batch(images, masks, predictions)
    finally:
        model.train(was_training)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(confusion, op=dist.ReduceOp.SUM)
    confusion_array = confusion.cpu().numpy()
    return confusion_array, compute_metrics(confusion_array)
