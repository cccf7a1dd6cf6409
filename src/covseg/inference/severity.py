"""Severity of lung involvement per case: the share of each lung affected and a CT severity score.

**Score.** A lobe-free adaptation of the CT severity score of Chung et al. (M. Chung, A. Bernheim,
X. Mei et al., "CT Imaging Features of 2019 Novel Coronavirus (2019-nCoV)", Radiology 2020;
295(1):202-207, doi:10.1148/radiol.2020200230). Chung et al. score each of the five lobes by the
share of it involved: 0 none (0 %), 1 minimal (1-25 %), 2 mild (26-50 %), 3 moderate (51-75 %),
4 severe (76-100 %), and sum the five lobes (0-20). covseg has no lobe masks, so it applies the same
bands to each **lung** (left, right) and sums the two: 0-8. This is an adaptation, not Chung's
score: a lung holds two or three lobes, so the same disease scores lower than on lobes, and the
two scales must not be compared. On a continuous share the bands are: 0 for exactly 0 %, then
(0, 25] -> 1, (25, 50] -> 2, (50, 75] -> 3, (75, 100] -> 4 (Chung's integer percentages leave the
gaps 25-26 % etc. open; a share rounds up into the next band only above its upper bound). A single
false-positive voxel already makes a band 1: ``--min-lesion-ml`` removes such specks first.

**Involvement.** Voxels of the lung-parenchyma classes (all lesion classes but pleural effusion,
:data:`covseg.inference.postprocess.OUTSIDE_LUNG_CLASSES`) inside a lung, divided by that lung's
voxels.

**Left and right.** From the lung mask (display order (Z, H, W), any non-zero value is lung), by the
first rule that applies; the report names it:

1. ``labels``: the mask holds exactly two non-zero values, one per lung (e.g. 1 and 2).
2. ``components``: the mask holds one value and its two largest 26-connected components each hold
   at least :data:`MIN_LUNG_SHARE` of the lung voxels; any smaller pieces go to the side of the
   mid-line (halfway between the two components' centres) they lie on.
3. Otherwise left and right are not separated (one component: lungs touching; more than two values:
   e.g. lobe labels, whose meaning covseg does not know), and only the whole lung is scored.

Which part is left: NIfTI world coordinates are RAS+ (x grows toward the patient's right), so the
part whose centre has the larger world x is the right lung. A header without orientation (qform and
sform codes 0) says nothing about sides: then no side is named.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from covseg.inference.postprocess import parenchymal_labels

SCHEME = (
    "lobe-free adaptation of Chung et al., Radiology 2020;295(1):202-207 (doi:10.1148/radiol.2020200230): "
    "per lung 0 none, 1 (0-25 %], 2 (25-50 %], 3 (50-75 %], 4 (75-100 %] of the lung involved, "
    "summed over left and right (0-8; Chung scores five lobes, 0-20)"
)
BAND_EDGES_PERCENT: tuple[float, ...] = (25.0, 50.0, 75.0)
"""Upper bounds of bands 1-3 (Chung et al. 2020); above the last is band 4, exactly 0 % is band 0."""
MAX_SCORE = 8
MIN_LUNG_SHARE = 0.10
"""A connected component is taken for a lung when it holds at least this share of the lung voxels."""

_STRUCTURE = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


def severity_band(percent: float) -> int:
    """Chung et al.'s band 0-4 of a share in percent (see the module docstring)."""
    if percent <= 0:
        return 0
    return 1 + sum(percent > edge for edge in BAND_EDGES_PERCENT)


@dataclass(frozen=True)
class LungSides:
    """``left`` and ``right`` bool masks (Z, H, W), or None each when sides are not separated."""

    left: np.ndarray | None
    right: np.ndarray | None
    rule: str
    """How the sides were found, or why not (one line)."""


ToStored = Callable[[np.ndarray], np.ndarray]
"""Display order (Z, H, W) -> the stored (X, Y, Z) layout that ``affine`` maps to the world
(``CaseData.reoriented.to_stored``)."""


def stored_as_shown(volume: np.ndarray) -> np.ndarray:
    """A volume kept as stored (no orientation): display order is the stored array transposed."""
    return volume.transpose(2, 1, 0)


def _centre_x(part: np.ndarray, affine: np.ndarray, to_stored: ToStored) -> float:
    """World x (mm) of the centre of a display-order (Z, H, W) mask, through its stored voxels (i, j, k)."""
    centre = np.array([float(np.mean(axis)) for axis in np.nonzero(to_stored(part))])
    return float(affine[0, :3] @ centre + affine[0, 3])


def _by_side(
    first: np.ndarray, second: np.ndarray, affine: np.ndarray, to_stored: ToStored, rule: str
) -> LungSides:
    first_x, second_x = _centre_x(first, affine, to_stored), _centre_x(second, affine, to_stored)
    if first_x == second_x:
        return LungSides(None, None, f"{rule}, but both parts are centred at the same world x: sides unknown")
    right, left = (first, second) if first_x > second_x else (second, first)
    return LungSides(left, right, rule)


def split_lungs(
    values: np.ndarray, affine: np.ndarray, oriented: bool = True, to_stored: ToStored = stored_as_shown
) -> LungSides:
    """Left and right lungs of a lung mask (display order (Z, H, W)), by the rules of the module docstring.

    ``affine``: the volume's stored voxel (i, j, k) -> RAS+ world (mm) matrix; ``to_stored``: how
    display order becomes that stored layout (the inverse of the reader's); ``oriented``: whether
    the header gives an orientation at all (a qform or sform code above 0).
    """
    lung = values != 0
    if not lung.any():
        return LungSides(None, None, "the lung mask is empty")
    if not oriented:
        return LungSides(None, None, "the volume's header has no orientation (qform and sform codes 0)")
    distinct = np.unique(values[lung])
    if len(distinct) == 2:
        return _by_side(
            values == distinct[0],
            values == distinct[1],
            affine,
            to_stored,
            f"labels: lung mask values {distinct[0]:g} and {distinct[1]:g}",
        )
    if len(distinct) > 2:
        shown = ", ".join(f"{value:g}" for value in distinct[:6]) + (", ..." if len(distinct) > 6 else "")
        return LungSides(
            None, None, f"the lung mask holds {len(distinct)} values ({shown}): sides not separated"
        )
    components, count = ndimage.label(lung, structure=_STRUCTURE)
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    if count < 2 or sizes[order[1]] < MIN_LUNG_SHARE * lung.sum():
        return LungSides(
            None, None, "the lung mask is one connected piece (lungs touching): sides not separated"
        )
    first, second = components == order[0] + 1, components == order[1] + 1
    first_x, second_x = _centre_x(first, affine, to_stored), _centre_x(second, affine, to_stored)
    midline = (first_x + second_x) / 2
    for label in order[2:] + 1:  # small pieces: by the side of the mid-line they lie on
        piece = components == label
        if (_centre_x(piece, affine, to_stored) > midline) == (first_x > midline):
            first |= piece
        else:
            second |= piece
    rule = (
        f"components: the two largest 26-connected components of the lung mask"
        f"{f', {count - 2} smaller piece(s) by the mid-line' if count > 2 else ''}"
    )
    return _by_side(first, second, affine, to_stored, rule)


@dataclass(frozen=True)
class LungInvolvement:
    """One lung (``left``, ``right``) or both (``lungs``): its size, lesion share and band."""

    lung: str
    lung_voxels: int
    lung_ml: float
    lesion_voxels: int
    lesion_ml: float
    percent: float
    band: int


@dataclass(frozen=True)
class Severity:
    """The severity block of a case's report (see the module docstring for every rule)."""

    scheme: str
    classes: tuple[str, ...]
    sides: str
    lungs: tuple[LungInvolvement, ...]
    score: int | None
    """Left band + right band (0-8); None when the sides are not separated."""
    max_score: int = MAX_SCORE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lung(self, name: str) -> LungInvolvement | None:
        return next((item for item in self.lungs if item.lung == name), None)


def _involvement(name: str, lung: np.ndarray, lesions: np.ndarray, voxel_ml: float) -> LungInvolvement:
    lung_voxels = int(np.count_nonzero(lung))
    lesion_voxels = int(np.count_nonzero(lesions & lung))
    percent = 100.0 * lesion_voxels / lung_voxels if lung_voxels else 0.0
    return LungInvolvement(
        name,
        lung_voxels,
        lung_voxels * voxel_ml,
        lesion_voxels,
        lesion_voxels * voxel_ml,
        percent,
        severity_band(percent),
    )


def assess_severity(
    labels: np.ndarray,
    lung_values: np.ndarray,
    class_names: Sequence[str],
    voxel_ml: float,
    affine: np.ndarray,
    oriented: bool = True,
    to_stored: ToStored = stored_as_shown,
) -> Severity:
    """The severity of ``labels`` (Z, H, W) uint8 with the lung mask ``lung_values`` (same shape).

    ``voxel_ml``: one voxel's volume in ml; ``affine``, ``oriented`` and ``to_stored`` as for
    :func:`split_lungs`.
    """
    counted = parenchymal_labels(class_names)
    lesions = np.isin(labels, counted)
    sides = split_lungs(lung_values, affine, oriented, to_stored)
    lungs = [_involvement("lungs", lung_values != 0, lesions, voxel_ml)]
    score = None
    if sides.left is not None and sides.right is not None:
        left = _involvement("left", sides.left, lesions, voxel_ml)
        right = _involvement("right", sides.right, lesions, voxel_ml)
        lungs += [left, right]
        score = left.band + right.band
    return Severity(SCHEME, tuple(class_names[label] for label in counted), sides.rule, tuple(lungs), score)
