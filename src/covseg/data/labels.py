"""Label masks as stored (uint8 PNG, float64 NIfTI, 0/255 binary images) to covseg's uint8 labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from covseg import CLASS_NAMES
from covseg.core.errors import CovsegError

NUM_CLASSES = len(CLASS_NAMES)
_CLASS_LIST = ", ".join(f"{label} {name}" for label, name in enumerate(CLASS_NAMES))


def _shown(values: np.ndarray, limit: int = 6) -> str:
    unique = np.unique(values)
    shown = ", ".join(f"{value:g}" for value in unique[:limit].tolist())
    return shown + (", ..." if unique.size > limit else "")


def to_labels(values: np.ndarray, where: str, mask_values: Sequence[float] | None = None) -> np.ndarray:
    """uint8 labels in 0..3 from a mask's stored values; ``where`` names the file in errors.

    Without ``mask_values`` the stored values must be the labels themselves (0.0 and 0 alike).
    With ``mask_values`` (e.g. ``(0, 255)``) the k listed values map to labels 0..k-1 and any other
    value is an error. A 0/255 mask without it gets an error that says which option to use.
    """
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    if mask_values is not None:
        labels = np.zeros(values.shape, dtype=np.uint8)
        known = np.zeros(values.shape, dtype=bool)
        for label, stored in enumerate(mask_values):
            hit = values == stored
            labels[hit] = label
            known |= hit
        if not known.all():
            listed = ",".join(f"{value:g}" for value in mask_values)
            raise CovsegError(
                f"{where}: mask values {_shown(values[~known])} are not in mask_values={listed}"
            )
        return labels
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        count = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise CovsegError(f"{where}: {count:,} mask values are NaN or infinite; a label mask holds "
                          f"the labels ({_CLASS_LIST})")
    labels = values.astype(np.uint8)
    bad = (labels != values) | (labels >= NUM_CLASSES)
    if bad.any():
        found = np.unique(values)
        if found.size <= 2 and set(found.tolist()) <= {0, 255} and 255 in found:
            raise CovsegError(
                f"{where}: mask values are 0/255 (a binary mask); map them to labels with "
                "--dataset-option mask_values=0,255"
            )
        raise CovsegError(
            f"{where}: label values {_shown(values[bad])} are outside the class set ({_CLASS_LIST})"
        )
    return labels


def parse_mask_values(text: str, option: str = "mask_values") -> tuple[float, ...]:
    """``"0,255"`` -> (0.0, 255.0); at most one value per class, no repeats."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise CovsegError(f"option {option}={text}: expected comma-separated numbers, e.g. 0,255") from None
    if not 2 <= len(values) <= NUM_CLASSES or len(set(values)) != len(values):
        raise CovsegError(
            f"option {option}={text}: list 2 to {NUM_CLASSES} distinct stored values, one per label 0, 1, ..."
        )
    return values


def one_hot_to_labels(values: np.ndarray, axis: int, where: str) -> np.ndarray:
    """uint8 labels from a one-hot mask with one channel per class (background first) on ``axis``.

    Every value must be 0 or 1 and every pixel in exactly one class; anything else (soft
    probabilities, pixels in no class or in two) is refused in one line naming ``where``.
    """
    if values.shape[axis] != NUM_CLASSES:
        raise CovsegError(f"{where}: a mask of shape {tuple(values.shape)} has {values.shape[axis]} "
                          f"channels; a one-hot mask has one per class ({NUM_CLASSES}: {_CLASS_LIST})")
    if not np.isin(values, (0, 1)).all():
        raise CovsegError(f"{where}: a {NUM_CLASSES}-channel mask must be one-hot (0 or 1 per class) but "
                          f"holds {_shown(values[~np.isin(values, (0, 1))])}")
    sums = values.astype(np.int64).sum(axis=axis)
    if (sums != 1).any():
        none, several = int((sums == 0).sum()), int((sums > 1).sum())
        raise CovsegError(f"{where}: one-hot mask with {none:,} pixels in no class and {several:,} in "
                          "several; each pixel belongs to exactly one class")
    return np.argmax(values, axis=axis).astype(np.uint8)
