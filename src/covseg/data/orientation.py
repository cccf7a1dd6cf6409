"""Which way a volume's stored axes point, and the flips and axis swaps that bring it to the display.

**Display orientation.** covseg shows a slice as ``raw[:, :, z].T`` of the array in nibabel's
layout (:mod:`covseg.data.nifti`): the array's first axis runs along the image's columns, its
second down the rows. The display is radiological — the patient's right on the image's left,
anterior at the top — when the first axis runs to the patient's Left and the second to
Posterior: the array is in **LPS** (nibabel axis codes, each the direction an axis points to),
slices then running inferior to superior. That is :data:`DISPLAY_ORIENTATION`, the orientation
covseg's models are trained in; every ONNX export records it (``covseg.orientation``).

**The rule** (:func:`reorientation`):

- A volume with a real orientation — a NIfTI with ``qform_code`` or ``sform_code`` > 0, and every
  DICOM series — is brought from its affine to the display orientation by flips and axis swaps
  only (:func:`nibabel.orientations.io_orientation`, ``ornt_transform``, ``apply_orientation``),
  predicted, and its labels are brought back to the input's own layout, so a label file keeps the
  input's affine. Voxels are never resampled: an oblique volume goes to the closest axis-aligned
  orientation and :meth:`Reorientation.describe` gives its obliquity in degrees
  (:func:`nibabel.affines.obliquity`, AFNI's definition).
- A NIfTI whose ``qform_code`` and ``sform_code`` are both 0 has no orientation (NIfTI-1
  header, "method 1": only voxel sizes, kept for ANALYZE 7.5 compatibility); nibabel then
  reports a default LAS-like affine that says nothing about the patient. Such a volume is shown
  as stored (``raw[:, :, z].T``), the way MedSeg's masks were drawn and its published PNG slices
  look (MedSeg's files carry no orientation), and the report says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from covseg.core.errors import CovsegError

DISPLAY_ORIENTATION = "LPS"
"""The orientation covseg displays and trains in: the stored array's axes point to the patient's
Left, Posterior and Superior (nibabel axis codes), shown as ``raw[:, :, z].T``. Recorded in every
ONNX export as ``covseg.orientation``; exports that predate the key were trained in it too."""
OBLIQUE_DEGREES = 0.01
"""Obliquity below this is rounding in the header (float32 affines), not an oblique acquisition."""
_PAIRS = ("LR", "PA", "SI")
_WORDS = {"L": "left", "R": "right", "A": "anterior", "P": "posterior", "S": "superior", "I": "inferior"}


def parse_orientation(text: str, where: str) -> str:
    """Check three nibabel axis codes, one of each pair L/R, A/P, S/I (e.g. ``"LPS"``); upper-case.

    Raises a one-line :class:`CovsegError` naming ``where`` for anything else.
    """
    codes = str(text).strip().upper()
    if len(codes) != 3 or sorted(_pair_of(code) for code in codes) != [0, 1, 2]:
        raise CovsegError(f"{where}: orientation '{text}' is not three axis codes with one each of "
                          "L/R, A/P and S/I (e.g. LPS)")
    return codes


def _pair_of(code: str) -> int:
    return next((index for index, pair in enumerate(_PAIRS) if code in pair), -1)


@dataclass(frozen=True)
class Reorientation:
    """How a stored volume (nibabel layout: column, row, slice) becomes display order and back.

    ``stored``: the axis codes of the stored array (closest world axes), None when the header has
    no orientation; ``target``: the axis codes shown (:data:`DISPLAY_ORIENTATION` unless a model
    says otherwise); ``transform``: nibabel's orientation array (3, 2) from stored to target, None
    when kept as stored; ``obliquity_deg``: the largest angle between a stored axis and the
    world axis it was taken for, in degrees (0 when axis-aligned or without orientation).
    """

    stored: str | None
    target: str
    transform: np.ndarray | None
    obliquity_deg: float = 0.0

    @property
    def oblique(self) -> bool:
        return self.obliquity_deg >= OBLIQUE_DEGREES

    def to_display(self, raw: np.ndarray) -> np.ndarray:
        """(X, Y, Z) stored array -> (slice, row, column) display order (a view when possible)."""
        if self.transform is not None:
            from nibabel.orientations import apply_orientation

            raw = apply_orientation(raw, self.transform)
        return raw.transpose(2, 1, 0)

    def to_stored(self, volume: np.ndarray) -> np.ndarray:
        """(slice, row, column) display order -> stored (X, Y, Z) layout; undoes :meth:`to_display`."""
        raw = volume.transpose(2, 1, 0)
        if self.transform is not None:
            from nibabel.orientations import apply_orientation, ornt_transform

            raw = apply_orientation(raw, ornt_transform(self._target_ornt(), self._stored_ornt()))
        return raw

    def display_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """The (slice, row, column) shape of a stored (X, Y, Z) shape."""
        return self._permute(tuple(int(size) for size in shape[:3]))

    def display_sizes(self, sizes: Sequence[float]) -> tuple[float, float, float]:
        """(slice, row, column) voxel sizes in mm from the stored (x, y, z) sizes."""
        return self._permute(tuple(float(size) for size in sizes[:3]))

    def _permute(self, values: tuple) -> tuple:
        if self.transform is not None:
            moved = [values[0]] * 3
            for axis, (new_axis, _) in enumerate(self.transform):
                moved[int(new_axis)] = values[axis]
            values = tuple(moved)
        return values[2], values[1], values[0]

    def _stored_ornt(self) -> np.ndarray:
        from nibabel.orientations import axcodes2ornt

        return axcodes2ornt(tuple(self.stored))

    def _target_ornt(self) -> np.ndarray:
        from nibabel.orientations import axcodes2ornt

        return axcodes2ornt(tuple(self.target))

    def describe(self) -> str:
        """One line for reports, e.g. ``stored RAS, shown as LPS (...); labels written back in RAS``."""
        if self.stored is None:
            return ("no orientation in the header (qform_code and sform_code 0): slices shown as "
                    "stored, raw[:, :, z].T, as MedSeg's were drawn")
        columns = f"{_WORDS[_opposite(self.target[0])]} to {_WORDS[self.target[0]]}"
        rows = f"{_WORDS[_opposite(self.target[1])]} to {_WORDS[self.target[1]]}"
        text = f"stored {self.stored}, shown as {self.target} (columns patient {columns}, rows {rows})"
        if self.stored != self.target:
            text += f"; labels written back in {self.stored}"
        if self.oblique:
            text += (f"; oblique by {self.obliquity_deg:.1f} degrees: taken as {self.stored}, the "
                     "closest axes, without resampling")
        return text


def _opposite(code: str) -> str:
    pair = _PAIRS[_pair_of(code)]
    return pair[1 - pair.index(code)]


def reorientation(
    affine: np.ndarray | None, target: str = DISPLAY_ORIENTATION, where: str = "the volume"
) -> Reorientation:
    """The :class:`Reorientation` of a volume whose voxel-to-world (RAS+, mm) affine is ``affine``.

    ``affine`` None means the volume has no orientation (a NIfTI with both form codes 0): it is
    shown as stored. Otherwise the closest axis-aligned orientation of ``affine``
    (:func:`nibabel.orientations.io_orientation`) is brought to ``target`` by flips and swaps.
    Raises a one-line :class:`CovsegError` naming ``where`` for an affine without a direction
    for each axis.
    """
    target = parse_orientation(target, "display orientation")
    if affine is None:
        return Reorientation(None, target, None)
    from nibabel.affines import obliquity
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt2axcodes, ornt_transform

    affine = np.asarray(affine, dtype=np.float64)
    finite = affine.shape == (4, 4) and bool(np.all(np.isfinite(affine)))
    if not finite or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CovsegError(f"{where}: the affine is not an invertible 4x4 matrix; the orientation is unknown")
    stored_ornt = io_orientation(affine)
    if np.isnan(stored_ornt).any():  # an axis too short next to the others to take a direction
        raise CovsegError(f"{where}: the affine gives one axis no direction; the orientation is unknown")
    stored = "".join(ornt2axcodes(stored_ornt))
    transform = ornt_transform(stored_ornt, axcodes2ornt(tuple(target)))
    identity = np.array_equal(transform, [[0, 1], [1, 1], [2, 1]])
    angle = float(np.max(np.abs(obliquity(affine))))
    return Reorientation(stored, target, None if identity else transform, math.degrees(angle))
