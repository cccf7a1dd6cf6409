"""What ``covseg predict`` reads: NIfTI volumes, 2-D images (PNG/JPG/TIFF) or folders of them.

Each input file is one *case*, named after its file (without ``.nii.gz``, ``.nii`` or the image
suffix) made safe by :func:`covseg.files.safe_file_name`: the name becomes the case's output
folder, so ``...nii.gz``, ``.hidden.nii.gz`` or ``a\\b.png`` can never reach outside ``--out``.
Images are read exactly as the ``folder`` data set reads training
slices and volumes as the ``medseg`` data set reads them: what the values mean (Hounsfield units or
8-bit grey levels) is decided by :func:`covseg.data.interpret.interpret_intensities` with the same
options (``--intensity``, ``--hu-offset``, ``--nan``), so a model sees at inference what it saw in
training, and the decision is recorded in each case's report. :mod:`covseg.inference.predict`
normalises the slices with the model's settings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.intensity import Intensity
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import is_nifti, nifti_stem, read_ct_volume, read_volume, voxel_size_mm
from covseg.data.slice_files import PIL_SUFFIXES, read_image
from covseg.files import safe_file_name

KINDS = "NIfTI volumes (.nii, .nii.gz) or images (" + ", ".join(PIL_SUFFIXES) + ")"


@dataclass(frozen=True)
class Case:
    """One input file: ``kind`` "volume" (3-D NIfTI) or "image" (one 2-D slice).

    ``name``: the file name without its suffix, made safe to use as a folder name (``case`` when
    nothing is left, e.g. for ``...nii.gz``).
    """

    name: str
    path: Path
    kind: Literal["volume", "image"]


@dataclass
class CaseData:
    """A case read into memory: slices (Z, H, W) or (1, H, W, 3) with stored values.

    ``reference``: the NIfTI image of a volume (affine, header, zooms), None for an image.
    ``voxel_ml``: volume of one voxel in millilitres (product of the voxel sizes in mm^3 / 1000,
    :func:`covseg.data.nifti.voxel_size_mm`), None for an image (a PNG carries no pixel size).
    ``assumed``: what the values were taken to be (:attr:`covseg.data.interpret.Intensities.summary`);
    ``replaced``: NaN/infinite values read as air (``--nan air``).
    """

    case: Case
    slices: np.ndarray
    intensity: Intensity
    reference: nib.Nifti1Image | None
    voxel_ml: float | None
    assumed: str = ""
    replaced: int = 0

    @property
    def spacing_mm(self) -> tuple[float, ...] | None:
        if self.reference is None:
            return None
        return voxel_size_mm(self.reference, self.case.path)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _is_input(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and (is_nifti(path) or path.suffix.lower() in PIL_SUFFIXES)
    )


def _case_of(path: Path) -> Case:
    if is_nifti(path):
        return Case(safe_file_name(nifti_stem(path)), path, "volume")
    if path.suffix.lower() in PIL_SUFFIXES:
        return Case(safe_file_name(path.stem), path, "image")
    raise CovsegError(f"{path} is not an input covseg can read: give {KINDS} or a folder of them")


def discover_cases(inputs: Sequence[Path]) -> list[Case]:
    """The cases of the given files and folders (a folder: its input files, naturally sorted).

    Two inputs whose case names are the same, ignoring case (so that a case-insensitive file
    system cannot merge their folders either), are refused: one would overwrite the other's outputs.
    """
    cases: list[Case] = []
    for path in map(Path, inputs):
        if path.is_dir():
            files = sorted((child for child in path.iterdir() if _is_input(child)), key=_natural_key)
            if not files:
                raise CovsegError(f"{path} holds no {KINDS}")
            cases += [_case_of(child) for child in files]
        elif path.exists():
            cases.append(_case_of(path))
        else:
            raise CovsegError(f"{path} does not exist")
    seen: dict[str, Case] = {}
    for case in cases:
        earlier = seen.setdefault(case.name.casefold(), case)
        if earlier is not case:
            raise CovsegError(
                f"{case.path} and {earlier.path} would both write to the case folder "
                f"'{earlier.name}'; rename one or predict them separately"
            )
    return cases


def read_case(case: Case, choice: IntensityChoice | None = None) -> CaseData:
    """Read a case, its intensities decided with ``choice`` (default: automatic, predict spelling)."""
    choice = choice or IntensityChoice(spelling="predict")
    if case.kind == "image":
        decided = read_image(case.path, choice)
        values, reference, voxel_ml = decided.values[None], None, None
    else:
        decided, reference = read_ct_volume(case.path, choice)
        values, voxel_ml = decided.values, math.prod(voxel_size_mm(reference, case.path)) / 1000.0
    return CaseData(case, values, decided.kind, reference, voxel_ml, decided.summary, decided.replaced)


def read_lung_labels(path: Path, data: CaseData) -> np.ndarray:
    """A lung mask volume's values (Z, H, W) float32 in display order, checked against the case.

    0 is outside the lung, any other value inside (a mask may give each lung its own value, e.g. 1
    and 2: :mod:`covseg.inference.severity` uses them). NaN or infinite values are refused.
    """
    if data.reference is None:
        raise CovsegError(
            f"--lung-mask {path}: lung masks go with NIfTI volumes, not with the image {data.case.path}"
        )
    values, reference = read_volume(path)
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise CovsegError(f"{path}: {bad:,} mask values are NaN or infinite; a mask holds 0 and non-zero")
    if reference.shape[:3] != data.reference.shape[:3]:
        raise CovsegError(
            f"--lung-mask {path} has shape {reference.shape[:3]} but {data.case.path} has "
            f"{data.reference.shape[:3]}"
        )
    if not np.allclose(reference.affine, data.reference.affine, atol=1e-3):
        raise CovsegError(
            f"--lung-mask {path} has another affine than {data.case.path}: not the same geometry"
        )
    return values


def read_lung_mask(path: Path, data: CaseData) -> np.ndarray:
    """A lung mask volume (any non-zero voxel is lung) as bool (Z, H, W) in display order, checked
    against the case (:func:`read_lung_labels`)."""
    return read_lung_labels(path, data) != 0
