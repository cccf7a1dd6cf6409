"""What ``covseg predict`` reads: NIfTI volumes, 2-D images (PNG/JPG/TIFF), DICOM series, folders.

Each input file is one *case*, named after its file (without ``.nii.gz``, ``.nii`` or the image
suffix) made safe by :func:`covseg.files.safe_file_name`: the name becomes the case's output
folder, so ``...nii.gz``, ``.hidden.nii.gz`` or ``a\\b.png`` can never reach outside ``--out``.
DICOM files in a folder (at any depth) are grouped by series (:mod:`covseg.data.dicom`): each
chosen series is one case (``--series``), named after its SeriesNumber and SeriesDescription.
Images are read exactly as the ``folder`` data set reads training
slices and volumes as the ``medseg`` data set reads them: what the values mean (Hounsfield units or
8-bit grey levels) is decided by :func:`covseg.data.interpret.interpret_intensities` with the same
options (``--intensity``, ``--hu-offset``, ``--nan``), so a model sees at inference what it saw in
training, and the decision is recorded in each case's report. Volumes with an orientation (NIfTI
with a qform/sform code, every DICOM series) are shown in the model's orientation
(:mod:`covseg.data.orientation`); labels go back to the input's own layout.
:mod:`covseg.inference.predict` normalises the slices with the model's settings.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.dicom import (
    SERIES_ALL,
    DicomSeries,
    DicomVolume,
    choose_series,
    is_dicom_file,
    read_series,
    scan_series,
)
from covseg.data.intensity import Intensity
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import (
    image_reorientation,
    is_nifti,
    nifti_stem,
    read_ct_volume,
    read_mask_values,
    voxel_size_mm,
)
from covseg.data.orientation import DISPLAY_ORIENTATION, Reorientation
from covseg.data.slice_files import PIL_SUFFIXES, read_image
from covseg.files import safe_file_name
from covseg.terminal import counted

logger = logging.getLogger(__name__)

KINDS = "NIfTI volumes (.nii, .nii.gz), images (" + ", ".join(PIL_SUFFIXES) + ") or DICOM series"


@dataclass(frozen=True)
class Case:
    """One input: ``kind`` "volume" (3-D NIfTI), "image" (one 2-D slice) or "dicom" (a series).

    ``name``: the file name without its suffix (a series: SeriesNumber_SeriesDescription), made
    safe to use as a folder name (``case`` when nothing is left, e.g. for ``...nii.gz``).
    ``path``: the file, or the folder a series was found in; ``series``: the DICOM series.
    """

    name: str
    path: Path
    kind: Literal["volume", "image", "dicom"]
    series: DicomSeries | None = None

    @property
    def where(self) -> str:
        """How reports and messages name the input: the file, or the folder and the series."""
        return self.series.where if self.series is not None else str(self.path)

    @property
    def is_volume(self) -> bool:
        return self.kind in ("volume", "dicom")


@dataclass
class CaseData:
    """A case read into memory: slices (Z, H, W) or (1, H, W, 3) with stored values.

    ``reference``: the NIfTI image of a volume (affine, header, zooms; for a DICOM series one
    built from its headers), None for an image. ``voxel_ml``: volume of one voxel in millilitres
    (product of the voxel sizes in mm^3 / 1000, :func:`covseg.data.nifti.voxel_size_mm`), None
    for an image (a PNG carries no pixel size). ``spacing_mm``: the voxel sizes (x, y, z) of
    the stored volume. ``assumed``: what the values were taken to be
    (:attr:`covseg.data.interpret.Intensities.summary`); ``replaced``: NaN/infinite values read
    as air (``--nan air``). ``reoriented``: how the stored volume became the slices (None for
    an image); ``dicom``: the series as read (for DICOM SEG), None for other inputs.
    """

    case: Case
    slices: np.ndarray
    intensity: Intensity
    reference: nib.Nifti1Image | None
    voxel_ml: float | None
    assumed: str = ""
    replaced: int = 0
    spacing_mm: tuple[float, ...] | None = None
    reoriented: Reorientation | None = None
    dicom: DicomVolume | None = None

    @property
    def orientation(self) -> str:
        """One line for the report: how the volume was oriented (and its geometry, for DICOM)."""
        if self.reoriented is None:
            return ""
        text = self.reoriented.describe()
        return f"{text}; {self.dicom.describe()}" if self.dicom is not None else text


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _is_input(path: Path) -> bool:
    """A NIfTI volume or an image, named or not with a leading dot."""
    return path.is_file() and (is_nifti(path) or path.suffix.lower() in PIL_SUFFIXES)


def _is_hidden(path: Path) -> bool:
    """A name that starts with a dot: in a folder, skipped (macOS writes ``._scan.nii.gz`` resource
    forks beside every file on foreign disks; they are not images). Given by name, it is an input."""
    return path.name.startswith(".")


def _hidden_note(folder: Path, hidden: Sequence[Path]) -> str:
    return (f"{folder}: skipped {counted(len(hidden), 'hidden file')} whose names start with a dot, e.g. "
            f"{hidden[0].name} (such as macOS ._ files); give one by name to predict it")


def _case_of(path: Path) -> Case:
    if is_nifti(path):
        return Case(safe_file_name(nifti_stem(path)), path, "volume")
    if path.suffix.lower() in PIL_SUFFIXES:
        return Case(safe_file_name(path.stem), path, "image")
    if is_dicom_file(path):
        raise CovsegError(f"{path} is one DICOM file; give the folder that holds its series")
    raise CovsegError(f"{path} is not an input covseg can read: give {KINDS} or a folder of them")


def _series_cases(
    folder: Path, series: Sequence[str], matched: set[str], passed_over: list[str]
) -> list[Case]:
    """The cases of the DICOM series under ``folder`` chosen by ``series`` (``--series``); the
    values that chose one go to ``matched``, a folder whose series none chose to ``passed_over``."""
    found = scan_series(folder)
    if not found:
        return []
    chosen = choose_series(found, series, folder)
    if not chosen:
        passed_over.append(f"{folder}: " + "; ".join(item.summary() for item in found))
    matched.update(value for value in series for item in chosen if value in (item.uid, str(item.number)))
    names = [item.case_name() for item in chosen]
    cases = []
    for item, name in zip(chosen, names, strict=True):
        if [other.casefold() for other in names].count(name.casefold()) > 1:  # same number and description
            name = safe_file_name(f"{name}_{item.uid[-12:]}")
        cases.append(Case(name, folder, "dicom", item))
    return cases


def discover_cases(inputs: Sequence[Path], series: Sequence[str] = ()) -> list[Case]:
    """The cases of the given files and folders (a folder: its input files, naturally sorted, and
    the DICOM series under it, chosen by ``series``: UIDs or SeriesNumbers, or ``all``; see
    :func:`covseg.data.dicom.choose_series`).

    Two inputs whose case names are the same, ignoring case (so that a case-insensitive file
    system cannot merge their folders either), are refused: one would overwrite the other's outputs.
    """
    cases: list[Case] = []
    matched: set[str] = set()
    passed_over: list[str] = []
    dicom_folders = 0
    for path in map(Path, inputs):
        if path.is_dir():
            inputs_here = sorted((child for child in path.iterdir() if _is_input(child)), key=_natural_key)
            files = [child for child in inputs_here if not _is_hidden(child)]
            hidden = [child for child in inputs_here if _is_hidden(child)]
            skipped = len(passed_over)
            found = _series_cases(path, series, matched, passed_over)
            dicom_folders += bool(found)
            if not files and not found and len(passed_over) == skipped:
                note = f"; {_hidden_note(path, hidden)}" if hidden else ""
                raise CovsegError(f"{path} holds no {KINDS}{note}")
            if hidden:
                logger.warning("%s", _hidden_note(path, hidden))
            cases += [_case_of(child) for child in files] + found
        elif path.exists():
            cases.append(_case_of(path))
        else:
            raise CovsegError(f"{path} does not exist")
    if series and not dicom_folders and not passed_over:
        raise CovsegError(f"--series {' '.join(series)} chooses DICOM series, but no input folder holds any")
    unmatched = [value for value in series if value != SERIES_ALL and value not in matched]
    if unmatched:
        raise CovsegError(f"--series {' '.join(unmatched)}: no such SeriesInstanceUID or SeriesNumber "
                          "among the DICOM series of the inputs")
    if passed_over:
        raise CovsegError(f"--series {' '.join(series)} chose none of the series in {passed_over[0]}")
    seen: dict[str, Case] = {}
    for case in cases:
        earlier = seen.setdefault(case.name.casefold(), case)
        if earlier is not case:
            raise CovsegError(
                f"{case.path} and {earlier.path} would both write to the case folder "
                f"'{earlier.name}'; rename one or predict them separately"
            )
    return cases


def read_case(
    case: Case, choice: IntensityChoice | None = None, orientation: str = DISPLAY_ORIENTATION
) -> CaseData:
    """Read a case, its intensities decided with ``choice`` (default: automatic, predict spelling),
    a volume shown in ``orientation`` (the model's, :mod:`covseg.data.orientation`)."""
    choice = choice or IntensityChoice(spelling="predict")
    if case.kind == "image":
        image = read_image(case.path, choice)
        return CaseData(case, image.values[None], image.kind, None, None, image.summary, image.replaced)
    if case.kind == "dicom":
        volume = read_series(case.series, choice, orientation)
        decided, reference, reoriented, sizes = (volume.intensities, volume.reference, volume.reoriented,
                                                 volume.voxel_size_mm)
    else:
        volume = None
        decided, reference = read_ct_volume(case.path, choice, orientation)
        reoriented = image_reorientation(reference, orientation, case.path)
        sizes = voxel_size_mm(reference, case.path)
    return CaseData(case, decided.values, decided.kind, reference, math.prod(sizes) / 1000.0, decided.summary,
                    decided.replaced, tuple(sizes), reoriented, volume)


def read_lung_labels(path: Path, data: CaseData) -> np.ndarray:
    """A lung mask volume's values (Z, H, W) float32 in display order, checked against the case.

    0 is outside the lung, any other value inside (a mask may give each lung its own value, e.g. 1
    and 2: :mod:`covseg.inference.severity` uses them). NaN or infinite values are refused.
    """
    if data.reference is None:
        raise CovsegError(
            f"--lung-mask {path}: lung masks go with volumes, not with the image {data.case.path}"
        )
    try:
        values, reference = read_mask_values(path, data.reoriented.target)
    except CovsegError as error:  # name the option: the file may be any of the inputs' paths
        message = str(error)
        raise CovsegError(f"--lung-mask {message}" if message.startswith(str(path))
                          else f"--lung-mask {path}: {message}") from None
    if reference.shape[:3] != data.reference.shape[:3]:
        raise CovsegError(
            f"--lung-mask {path} has shape {reference.shape[:3]} but {data.case.where} has "
            f"{data.reference.shape[:3]}"
        )
    if not np.allclose(reference.affine, data.reference.affine, atol=1e-3):
        raise CovsegError(
            f"--lung-mask {path} has another affine than {data.case.where}: not the same geometry"
        )
    return values


def read_lung_mask(path: Path, data: CaseData) -> np.ndarray:
    """A lung mask volume (any non-zero voxel is lung) as bool (Z, H, W) in display order, checked
    against the case (:func:`read_lung_labels`)."""
    return read_lung_labels(path, data) != 0
