"""``--save-probabilities``: the model's class probabilities at the native size, one file per class.

What is saved is what the labels were taken from: the softmax at the native size (resized back
bilinearly, averaged over the ``--tta`` flips), before any post-processing, so a threshold other
than the argmax can be tried downstream.

- Volumes: ``probabilities/<label>_<class>.nii.gz``, one per class (background included; they sum
  to 1 at every voxel), with the input's geometry. NIfTI-1 has no 16-bit float type (nibabel refuses
  float16), so the compact form is uint16 with ``scl_slope`` 1/65535: every NIfTI reader (nibabel's
  ``get_fdata``, ITK, 3D Slicer, FSL) returns probabilities in [0, 1], quantised in steps of
  1.5e-5 (finer than float16's 4.9e-4 near 1), in the 2 bytes per voxel float16 would take.
- Images: ``probabilities.npy``, float16 (C, H, W), which NumPy reads as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from covseg.data.nifti import write_derived_volume
from covseg.data.orientation import DISPLAY_ORIENTATION
from covseg.files import atomic_write, child_path, safe_file_name

LEVELS = 65535
"""uint16 steps of the stored probabilities: probability = stored value / LEVELS."""
FOLDER = "probabilities"
IMAGE_FILE = "probabilities.npy"


class ProbabilityStore:
    """Collects (Z, C, H, W) probabilities batch by batch as uint16 (value x :data:`LEVELS`).

    Pass :meth:`add` as ``on_probabilities`` to :func:`covseg.inference.predict.predict_slices`;
    2 bytes per voxel and class are held in memory.
    """

    def __init__(self, slices: int, classes: int, size: tuple[int, int]):
        self.stored = np.zeros((slices, classes, *size), np.uint16)

    def add(self, first: int, probabilities: np.ndarray) -> None:
        scaled = np.rint(np.clip(probabilities, 0.0, 1.0) * LEVELS)
        self.stored[first : first + len(probabilities)] = scaled.astype(np.uint16)

    def probabilities(self, label: int) -> np.ndarray:
        """Class ``label``'s probabilities (Z, H, W) float32 as stored (quantised)."""
        return self.stored[:, label].astype(np.float32) / LEVELS


def class_file_name(label: int, name: str) -> str:
    """``<label>_<class>.nii.gz`` with the class name made safe (names come from the model file)."""
    return f"{label}_{safe_file_name(name, fallback='class')}.nii.gz"


def _description(label: int, name: str) -> bytes:
    text = f"covseg probability of {label} {name}"
    return text.encode("ascii", "replace")[:79]  # descrip holds 80 bytes, NUL-ended


def write_probability_volume(
    stored: np.ndarray, reference: nib.Nifti1Image, path: Path, label: int, name: str,
    target: str = DISPLAY_ORIENTATION,
) -> None:
    """Write one class's probabilities, (Z, H, W) uint16 in display order ``target``, over the
    reference (:func:`covseg.data.nifti.write_derived_volume`) with ``scl_slope`` 1/:data:`LEVELS`."""

    def describe(header: nib.Nifti1Header) -> None:
        header.set_slope_inter(1.0 / LEVELS, 0.0)
        header.set_intent("none")
        header["cal_min"], header["cal_max"] = 0.0, 1.0
        header["descrip"] = _description(label, name)

    write_derived_volume(stored.astype(np.uint16, copy=False), reference, path, target, describe)


def write_probabilities(
    store: ProbabilityStore,
    reference: nib.Nifti1Image | None,
    folder: Path,
    class_names: Sequence[str],
    target: str = DISPLAY_ORIENTATION,
) -> list[Path]:
    """The probability files of one case in ``folder`` (see the module docstring); their paths."""
    if reference is None:
        path = child_path(folder, IMAGE_FILE)
        array = (store.stored[0].astype(np.float32) / LEVELS).astype(np.float16)
        atomic_write(path, lambda handle: np.save(handle, array, allow_pickle=False))
        return [path]
    paths = []
    for label, name in enumerate(class_names):
        path = child_path(folder / FOLDER, class_file_name(label, name))
        write_probability_volume(store.stored[:, label], reference, path, label, name, target)
        paths.append(path)
    return paths
