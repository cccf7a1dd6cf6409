"""What ``covseg predict`` reads: NIfTI volumes, 2-D images (PNG/JPG/TIFF) or folders of them.

Each input file is one *case*, named after its file (without ``.nii.gz``, ``.nii`` or the image
suffix) made safe by :func:`covseg.files.safe_file_name`: the name becomes the case's output
folder, so ``...nii.gz``, ``.hidden.nii.gz`` or ``a\\b.png`` can never reach outside ``--out``.
Slices keep their stored values; :mod:`covseg.inference.predict` normalises them with the model's
settings. Images are read exactly as the ``folder`` data set reads training slices (alpha dropped,
gray stored as RGB made gray, 8-bit -> ``uint8``, 16-bit -> Hounsfield units), so a model sees at
inference what it saw in training.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.intensity import Intensity
from covseg.data.nifti import is_nifti, nifti_stem, read_volume
from covseg.data.slice_files import PIL_SUFFIXES, read_pixels
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
    ``voxel_ml``: volume of one voxel in millilitres (product of the zooms in mm^3 / 1000), None
    for an image (a PNG carries no pixel size).
    """

    case: Case
    slices: np.ndarray
    intensity: Intensity
    reference: nib.Nifti1Image | None
    voxel_ml: float | None

    @property
    def spacing_mm(self) -> tuple[float, ...] | None:
        if self.reference is None:
            return None
        return tuple(float(zoom) for zoom in self.reference.header.get_zooms()[:3])


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


def read_case(case: Case, scale_8bit: bool = False) -> CaseData:
    """Read a case; NIfTI volumes stored as uint8 (or any with ``scale_8bit``) count as 8-bit."""
    if case.kind == "image":
        pixels = read_pixels(case.path)
        intensity: Intensity = "uint8" if pixels.dtype == np.uint8 else "hu"
        if intensity == "hu" and pixels.ndim != 2:
            raise CovsegError(
                f"{case.path} is a colour image of {pixels.dtype} values: Hounsfield slices have one channel"
            )
        return CaseData(case, pixels[None], intensity, None, None)
    volume, reference = read_volume(case.path)
    eight_bit = scale_8bit or reference.get_data_dtype() == np.uint8
    zooms = reference.header.get_zooms()[:3]
    voxel_ml = float(np.prod(zooms, dtype=np.float64)) / 1000.0
    return CaseData(case, volume, "uint8" if eight_bit else "hu", reference, voxel_ml)


def read_lung_mask(path: Path, data: CaseData) -> np.ndarray:
    """A lung mask volume (any non-zero voxel is lung) in display order, checked against the case."""
    if data.reference is None:
        raise CovsegError(
            f"--lung-mask {path}: lung masks go with NIfTI volumes, not with the image {data.case.path}"
        )
    mask, reference = read_volume(path)
    if reference.shape[:3] != data.reference.shape[:3]:
        raise CovsegError(
            f"--lung-mask {path} has shape {reference.shape[:3]} but {data.case.path} has "
            f"{data.reference.shape[:3]}"
        )
    if not np.allclose(reference.affine, data.reference.affine, atol=1e-3):
        raise CovsegError(
            f"--lung-mask {path} has another affine than {data.case.path}: not the same geometry"
        )
    return mask != 0
