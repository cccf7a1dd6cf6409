"""Post-processing of predicted labels: lesions restricted to the lung, small lesions removed.

Both steps only ever turn lesion voxels into background (label 0), and each says what it removed,
per class, in voxels and (for volumes) millilitres; ``covseg predict`` puts that in the report.

- :func:`restrict_to_lung` (``--restrict-to-lung``, needs ``--lung-mask``): lesion voxels outside
  the lung mask become background, for every class except those that lie outside the lung by
  definition (:data:`OUTSIDE_LUNG_CLASSES`: pleural effusion fills the pleural space between lung
  and chest wall, which a lung mask leaves out).
- :func:`remove_small_lesions` (``--min-lesion-ml``): a lesion is a 3-D connected component of
  lesion voxels of any class (so a consolidation core and its ground-glass rim are one lesion and
  never get a hole punched in them), with 26-connectivity (voxels touching by a face, an edge or a
  corner: ``scipy.ndimage.generate_binary_structure(3, 3)``, the most permissive joining). A
  lesion whose volume is below the threshold is removed whole. The volume is voxels x voxel ml.

The order is fixed: lung restriction first, then the components of what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from covseg.core.errors import CovsegError

OUTSIDE_LUNG_CLASSES: tuple[str, ...] = ("effusion",)
"""Class names kept outside the lung mask by ``--restrict-to-lung`` and left out of the lung's
involvement (:mod:`covseg.inference.severity`): pleural effusion lies outside the lung."""

CONNECTIVITY = 26
"""Neighbours that join voxels into one lesion: 26 (faces, edges and corners)."""

_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 3x3x3 of ones: 26-connectivity


def parenchymal_labels(class_names: Sequence[str]) -> tuple[int, ...]:
    """Lesion labels (1..) that lie in the lung: all but :data:`OUTSIDE_LUNG_CLASSES`."""
    return tuple(
        label for label in range(1, len(class_names)) if class_names[label] not in OUTSIDE_LUNG_CLASSES
    )


@dataclass(frozen=True)
class Removed:
    """What one post-processing step removed, per lesion label (1..): voxels and ml (None for images)."""

    step: str
    setting: str
    voxels: tuple[int, ...]
    volume_ml: tuple[float, ...] | None
    components: int | None = None
    """Lesions (connected components) removed, for the component filter."""
    kept_classes: tuple[str, ...] = ()
    """Lesion classes the step leaves alone (lung restriction: those outside the lung by definition)."""

    def to_dict(self, class_names: Sequence[str]) -> dict:
        """The report's record: the step, its setting and, per class name, voxels and ml removed."""
        record: dict = {"step": self.step, "setting": self.setting}
        if self.components is not None:
            record["lesions_removed"] = self.components
        if self.kept_classes:
            record["classes_kept"] = list(self.kept_classes)
        record["removed"] = {
            class_names[label]: {
                "voxels": self.voxels[label - 1],
                "volume_ml": None if self.volume_ml is None else self.volume_ml[label - 1],
            }
            for label in range(1, len(class_names))
        }
        return record


def _removed_counts(before: np.ndarray, removed: np.ndarray, classes: int) -> tuple[int, ...]:
    counts = np.bincount(before[removed].ravel(), minlength=classes)
    return tuple(int(count) for count in counts[1:classes])


def _volumes(voxels: tuple[int, ...], voxel_ml: float | None) -> tuple[float, ...] | None:
    return None if voxel_ml is None else tuple(count * voxel_ml for count in voxels)


def restrict_to_lung(
    labels: np.ndarray, lung: np.ndarray, class_names: Sequence[str], voxel_ml: float | None
) -> tuple[np.ndarray, Removed]:
    """Labels (Z, H, W) uint8 with the lesions outside ``lung`` (bool, same shape) set to 0.

    Classes named in :data:`OUTSIDE_LUNG_CLASSES` are kept wherever they are. Returns the new
    labels (a copy) and what was removed. Raises :class:`CovsegError` when the shapes differ.
    """
    if lung.shape != labels.shape:
        raise CovsegError(f"lung mask of shape {lung.shape} for labels of shape {labels.shape}")
    restricted = parenchymal_labels(class_names)
    outside = ~lung & np.isin(labels, restricted)
    result = labels.copy()
    result[outside] = 0
    voxels = _removed_counts(labels, outside, len(class_names))
    kept = tuple(class_names[label] for label in range(1, len(class_names)) if label not in restricted)
    return result, Removed(
        "restrict-to-lung",
        "lesions outside the lung mask removed",
        voxels,
        _volumes(voxels, voxel_ml),
        kept_classes=kept,
    )


def remove_small_lesions(
    labels: np.ndarray, min_ml: float, voxel_ml: float, class_names: Sequence[str]
) -> tuple[np.ndarray, Removed]:
    """Labels (Z, H, W) uint8 without the lesions (26-connected components of any lesion class)
    smaller than ``min_ml`` millilitres; ``voxel_ml`` is the volume of one voxel in ml.

    A component of exactly ``min_ml`` is kept. Returns the new labels (a copy) and what was removed.
    Raises :class:`CovsegError` for a negative or non-finite threshold or voxel volume.
    """
    if not np.isfinite(min_ml) or min_ml < 0:
        raise CovsegError(f"--min-lesion-ml {min_ml}: must be a finite number >= 0")
    if not np.isfinite(voxel_ml) or voxel_ml <= 0:
        raise CovsegError(f"voxel volume {voxel_ml} ml: must be a positive number")
    components, count = ndimage.label(labels > 0, structure=_STRUCTURE)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    # Compare in voxels, with the threshold rounded up: no float rounding decides a lesion's fate.
    min_voxels = int(np.ceil(min_ml / voxel_ml - 1e-9))
    small = np.flatnonzero(sizes < min_voxels)
    small = small[small > 0]  # 0 is the background, never a lesion
    removed = np.isin(components, small)
    result = labels.copy()
    result[removed] = 0
    voxels = _removed_counts(labels, removed, len(class_names))
    setting = f"lesions (26-connected) under {min_ml:g} ml ({min_voxels} voxels) removed"
    return result, Removed(
        "min-lesion-ml", setting, voxels, _volumes(voxels, voxel_ml), components=len(small)
    )
