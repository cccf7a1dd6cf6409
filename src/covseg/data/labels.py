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
