"""Evaluate a model on a data loader: one confusion matrix for the whole set (and one per slice, for
bootstrap intervals), then every metric."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from covseg.core.errors import CovsegError
from covseg.evaluation.confusion import confusion_matrix, slice_confusion_matrices
from covseg.evaluation.merge import ClassMerge
from covseg.evaluation.metrics import compute_metrics
from covseg.tta import flip_set, mean_over_flips

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


def flip_averaged_probabilities(model: torch.nn.Module, images: torch.Tensor, tta: str) -> torch.Tensor:
    """Softmax (N, C, H, W) of ``model`` averaged over the flips of ``tta`` (:mod:`covseg.tta`, the
    flip set ``covseg predict --tta`` uses). NaN logits count as -inf and +inf as the largest float,
    as in ``covseg predict`` (:func:`covseg.inference.predict.softmax`)."""

    def probabilities(batch: torch.Tensor) -> torch.Tensor:
        logits = torch.nan_to_num(model(batch).float(), nan=float("-inf"),
                                  posinf=torch.finfo(torch.float32).max, neginf=float("-inf"))
        return torch.softmax(logits, dim=1)

    return mean_over_flips(probabilities, images, flip_set(tta), lambda batch, axes: torch.flip(batch, axes))


def evaluate_model(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    num_classes: int,
    autocast_dtype: torch.dtype | None = None,
    on_batch: BatchCallback | None = None,
    tta: str = "none",
    *,
    channels_last: bool = False,
    class_names: Sequence[str] | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Run ``model`` over ``loader`` (image (N, 3, H, W), mask (N, H, W) batches) and score it.

    Returns ``(confusion, metrics)``: the (C, C) int64 pixel counts of the whole set and
    :func:`~covseg.evaluation.metrics.compute_metrics` of them. Runs under ``no_grad`` in eval mode
    and restores the model's previous mode. ``autocast_dtype`` (e.g. ``torch.bfloat16``, on any
    device) runs the forward pass under autocast; the logits are cast to float32 before the class
    is chosen, so the metrics are counted as in float32. ``channels_last`` hands the model NHWC
    images (pass the model in that layout too). When ``torch.distributed`` is initialised, each
    process evaluates its own shard and the confusion matrices are summed over all processes, so
    every rank returns the same metrics of the whole set. ``tta``: ``flips`` scores the argmax of
    the softmax averaged over the mirrored slices (:func:`flip_averaged_probabilities`).
    ``class_names`` (the run's label set) name the per-class metrics.
    """
    confusion = _run(model, loader, device, num_classes, autocast_dtype, on_batch, tta, channels_last)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(confusion, op=dist.ReduceOp.SUM)
    confusion_array = confusion.cpu().numpy()
    return confusion_array, compute_metrics(confusion_array, class_names=class_names)


def evaluate_slices(
    model: torch.nn.Module,
    loader: DataLoader,
    device: torch.device,
    num_classes: int,
    autocast_dtype: torch.dtype | None = None,
    on_batch: BatchCallback | None = None,
    tta: str = "none",
    *,
    channels_last: bool = False,
    merge: ClassMerge | None = None,
) -> np.ndarray:
    """One confusion matrix per slice of ``loader``'s dataset, (N, C, C) int64, in dataset order.

    ``loader`` must go through its dataset in order (no shuffling, no sampler), in this process
    only: unlike :func:`evaluate_model` nothing is exchanged with other processes, so one rank
    may call it alone. Summed over N it is :func:`evaluate_model`'s confusion. ``tta`` and
    ``channels_last`` as there. ``merge`` relabels each pixel's predicted class (argmax first:
    the model's answer) into the data's fewer classes (:class:`~covseg.evaluation.merge.ClassMerge`);
    C is then the merged count and ``on_batch`` sees the merged predictions.
    """
    scored = len(merge.target_names) if merge is not None else num_classes
    collector = SliceConfusions(len(loader.dataset), scored, device)

    def collect(images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor) -> None:
        collector.add(images, masks, predictions)
        if on_batch is not None:
            on_batch(images, masks, predictions)

    _run(model, loader, device, num_classes, autocast_dtype, collect, tta, channels_last, merge)
    return collector.gather()


class SliceConfusions:
    """Per-slice confusion matrices, collected batch by batch as ``evaluate_model``'s ``on_batch``.

    ``count`` slices in all; this process sees the slices ``rank``, ``rank + world_size``, ... in
    order (the validation shards of :mod:`covseg.training.loaders`). :meth:`gather` sums the
    matrices of all processes (each slice is filled by exactly one), so every rank gets all N.
    """

    def __init__(self, count: int, num_classes: int, device: torch.device, rank: int = 0,
                 world_size: int = 1):
        self.matrices = torch.zeros((count, num_classes, num_classes), dtype=torch.int64, device=device)
        self.num_classes = num_classes
        self.rank, self.world_size = rank, world_size
        self.seen = 0

    def add(self, images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor) -> None:
        counts = slice_confusion_matrices(predictions, masks, self.num_classes)
        order = self.seen + torch.arange(len(counts), device=counts.device)
        positions = self.rank + self.world_size * order
        self.matrices[positions] += counts.to(self.matrices.device)
        self.seen += len(counts)

    def gather(self) -> np.ndarray:
        """(N, C, C) int64 of every slice; a collective call when torch.distributed is initialised
        with more than one process."""
        matrices = self.matrices
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            matrices = matrices.clone()
            dist.all_reduce(matrices, op=dist.ReduceOp.SUM)
        return matrices.cpu().numpy()


def _run(
    model: torch.nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device,
    num_classes: int,
    autocast_dtype: torch.dtype | None,
    on_batch: BatchCallback | None,
    tta: str = "none",
    channels_last: bool = False,
    merge: ClassMerge | None = None,
) -> torch.Tensor:
    """The (C, C) confusion of this process's batches (see :func:`evaluate_model`); C is the merged
    class count under ``merge``."""
    was_training = model.training
    model.eval()
    scored = len(merge.target_names) if merge is not None else num_classes
    confusion = torch.zeros((scored, scored), dtype=torch.int64, device=device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    try:
        with torch.no_grad():
            for images, masks in loader:
                images = images.to(device, non_blocking=True, memory_format=memory_format)
                masks = masks.to(device, non_blocking=True)
                autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                            else contextlib.nullcontext())
                with autocast:
                    logits = (model(images) if tta == "none"
                              else flip_averaged_probabilities(model, images, tta))
                if logits.ndim != 4 or logits.shape[1] != num_classes:
                    raise CovsegError(
                        f"the model returned logits of shape {tuple(logits.shape)}, "
                        f"expected (N, {num_classes}, H, W)"
                    )
                predictions = predict_labels(logits)
                if merge is not None:
                    predictions = merge.relabel(predictions)
                confusion += confusion_matrix(predictions, masks, scored)
                if on_batch is not None:
                    on_batch(images, masks, predictions)
    finally:
        model.train(was_training)
    return confusion
