"""Segmentation metrics from one confusion matrix summed over the whole validation set.

Every metric here is computed from the pixel counts of all validation images together, never as a
mean of per-batch or per-image scores: a batch without effusion must not count as a perfect (or a
zero) effusion score.

A class absent from both the prediction and the target (its IoU and Dice are 0/0) has the per-class
value NaN and is left out of the means; a mean over no present class at all is NaN too. ``miou``
averages over all classes including background, as the reference study's table reports;
``lesion_miou`` and ``mean_lesion_dice`` over the lesion classes only: every class but background
(0), i.e. 1-3 for MedSeg and the single infection class of a binary set. Any class count C >= 2
works; ``iou`` and ``dice`` return one value per class, which covseg names by the data's labels.

Registered through ``[project.entry-points.covseg]`` in covseg's pyproject.toml, like any plugin.
"""

from __future__ import annotations

import numpy as np

from covseg.plugins import MetricEntry, hookimpl


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator, NaN where the denominator is 0 (class absent)."""
    numerator = numerator.astype(np.float64)
    denominator = denominator.astype(np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.nan)


def _counts(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True positives, false positives and false negatives per class (rows truth, columns prediction)."""
    confusion = np.asarray(confusion, dtype=np.int64)
    true_positive = np.diag(confusion)
    false_positive = confusion.sum(axis=0) - true_positive
    false_negative = confusion.sum(axis=1) - true_positive
    return true_positive, false_positive, false_negative


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Intersection over union TP / (TP + FP + FN) per class; NaN for a class absent everywhere."""
    true_positive, false_positive, false_negative = _counts(confusion)
    return _ratio(true_positive, true_positive + false_positive + false_negative)


def dice_per_class(confusion: np.ndarray) -> np.ndarray:
    """Dice 2 TP / (2 TP + FP + FN) per class; NaN for a class absent everywhere."""
    true_positive, false_positive, false_negative = _counts(confusion)
    return _ratio(2 * true_positive, 2 * true_positive + false_positive + false_negative)


def _mean_present(values: np.ndarray) -> float:
    """Mean over the classes that are present (not NaN); NaN when none is."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else float("nan")


def miou(confusion: np.ndarray) -> float:
    return _mean_present(iou_per_class(confusion))


def lesion_miou(confusion: np.ndarray) -> float:
    return _mean_present(iou_per_class(confusion)[1:])


def pixel_accuracy(confusion: np.ndarray) -> float:
    confusion = np.asarray(confusion, dtype=np.int64)
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else float("nan")


def iou(confusion: np.ndarray) -> list[float]:
    """IoU per class, in label order (covseg names them)."""
    return iou_per_class(confusion).tolist()


def dice(confusion: np.ndarray) -> list[float]:
    """Dice per class, in label order (covseg names them)."""
    return dice_per_class(confusion).tolist()


def mean_lesion_dice(confusion: np.ndarray) -> float:
    return _mean_present(dice_per_class(confusion)[1:])


@hookimpl
def covseg_metrics() -> list[MetricEntry]:
    return [
        MetricEntry("miou", miou, "Mean IoU over all classes, background included (the study's mIoU).",
                    tags=("overall",)),
        MetricEntry("lesion_miou", lesion_miou,
                    "Mean IoU over the lesion classes (all but background).", tags=("overall",)),
        MetricEntry("pixel_accuracy", pixel_accuracy, "Share of pixels labelled correctly.",
                    tags=("overall",)),
        MetricEntry("mean_lesion_dice", mean_lesion_dice,
                    "Mean Dice over the lesion classes (all but background).", tags=("overall",)),
        MetricEntry("iou", iou, "IoU of each class.", tags=("per-class",)),
        MetricEntry("dice", dice, "Dice of each class.", tags=("per-class",)),
    ]
