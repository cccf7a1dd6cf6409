"""Label masks as stored (uint8 PNG, float64 NIfTI, 0/255 binary images) to covseg's uint8 labels,
and the data set option that declares a label set (``labels=background,infection``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from covseg import CLASS_NAMES
from covseg.core.entries import MEDSEG_LABELS, LabelSet
from covseg.core.errors import CovsegError
from covseg.data.options import option_name

NUM_CLASSES = len(CLASS_NAMES)
"""MedSeg's class count, the default label set's."""
LABELS_OPTION = "labels"
"""The dataset option that declares the classes of a data set's masks (names in mask-value order)."""
LABELS_HELP = "class names in mask-value order, background first (default background,ground-glass," \
    "consolidation,effusion; e.g. background,infection for binary infection masks)"


def parse_labels(text: str, option: str = LABELS_OPTION) -> LabelSet:
    """``"background,infection"`` -> ``LabelSet(("background", "infection"))``; one-line errors."""
    try:
        return LabelSet(tuple(part.strip() for part in text.split(",")))
    except ValueError as error:
        raise CovsegError(f"option {option}={text}: {error} (e.g. {option}=background,infection)") from None


def _declare_hint(labels: LabelSet) -> str:
    return (f"({labels.describe()}); declare other classes with {option_name()} "
            f"{LABELS_OPTION}=background,NAME,...")


def _shown(values: np.ndarray, limit: int = 6) -> str:
    unique = np.unique(values)
    shown = ", ".join(f"{value:g}" for value in unique[:limit].tolist())
    return shown + (", ..." if unique.size > limit else "")


def to_labels(values: np.ndarray, where: str, mask_values: Sequence[float] | None = None,
              labels: LabelSet = MEDSEG_LABELS) -> np.ndarray:
    """uint8 labels in 0..len(labels)-1 from a mask's stored values; ``where`` names the file in errors.

    Without ``mask_values`` the stored values must be the labels themselves (0.0 and 0 alike); a
    value above the last label of ``labels`` is refused, naming the values found and the
    ``labels`` option. With ``mask_values`` (e.g. ``(0, 255)``) the k listed values map to labels
    0..k-1 and any other value is an error. A 0/255 mask without it gets an error that says which
    option to use.
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
                          f"the labels ({labels.describe()})")
    result = values.astype(np.uint8)
    bad = (result != values) | (result >= len(labels))
    if bad.any():
        found = np.unique(values)
        if found.size <= 2 and set(found.tolist()) <= {0, 255} and 255 in found:
            raise CovsegError(
                f"{where}: mask values are 0/255 (a binary mask); map them to labels with "
                f"{option_name()} mask_values=0,255 {option_name()} {LABELS_OPTION}=background,NAME "
                "(e.g. background,infection)"
            )
        raise CovsegError(f"{where}: label values {_shown(values[bad])} are outside the class set "
                          f"{_declare_hint(labels)}")
    return result


def parse_mask_values(text: str, option: str = "mask_values", most: int = 256) -> tuple[float, ...]:
    """``"0,255"`` -> (0.0, 255.0); 2 to ``most`` values, no repeats."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise CovsegError(f"option {option}={text}: expected comma-separated numbers, e.g. 0,255") from None
    if not 2 <= len(values) <= most or len(set(values)) != len(values):
        raise CovsegError(
            f"option {option}={text}: list 2 to {most} distinct stored values, one per label 0, 1, ..."
        )
    return values


def check_mask_values(mask_values: Sequence[float], labels: LabelSet, declared: bool,
                      option: str = "mask_values") -> None:
    """Refuse ``mask_values`` that do not list one stored value per class of ``labels``.

    Two values against MedSeg's four default classes would silently make every lesion ground-glass
    (label 1); ``declared`` says whether ``labels`` came from the ``labels`` option (for the hint).
    """
    if len(mask_values) == len(labels):
        return
    listed = ",".join(f"{value:g}" for value in mask_values)
    if declared:
        raise CovsegError(f"option {option}={listed} maps {len(mask_values)} stored values, but "
                          f"{LABELS_OPTION}= declares {len(labels)} classes ({labels.describe()}); "
                          "list one stored value per class")
    raise CovsegError(f"option {option}={listed} maps {len(mask_values)} stored values, but the data set's "
                      f"classes are {len(labels)} ({labels.describe()}); say what the masks mark with "
                      f"{option_name()} {LABELS_OPTION}=background,NAME (e.g. background,infection)")


def one_hot_to_labels(values: np.ndarray, axis: int, where: str,
                      labels: LabelSet = MEDSEG_LABELS) -> np.ndarray:
    """uint8 labels from a one-hot mask with one channel per class of ``labels`` on ``axis``.

    Every value must be 0 or 1 and every pixel in exactly one class; anything else (soft
    probabilities, pixels in no class or in two) is refused in one line naming ``where``.
    """
    if values.shape[axis] != len(labels):
        raise CovsegError(f"{where}: a mask of shape {tuple(values.shape)} has {values.shape[axis]} "
                          f"channels; a one-hot mask has one per class ({len(labels)}: {labels.describe()})")
    if not np.isin(values, (0, 1)).all():
        raise CovsegError(f"{where}: a {len(labels)}-channel mask must be one-hot (0 or 1 per class) but "
                          f"holds {_shown(values[~np.isin(values, (0, 1))])}")
    sums = values.astype(np.int64).sum(axis=axis)
    if (sums != 1).any():
        none, several = int((sums == 0).sum()), int((sums > 1).sum())
        raise CovsegError(f"{where}: one-hot mask with {none:,} pixels in no class and {several:,} in "
                          "several; each pixel belongs to exactly one class")
    return np.argmax(values, axis=axis).astype(np.uint8)
