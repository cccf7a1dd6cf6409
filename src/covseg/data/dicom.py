"""DICOM CT series: found in folders, grouped by series, checked, and read as a volume in HU.

Needs pydicom, the optional extra ``covseg[dicom]``; without it one line names the extra.

**Series.** Every file under a folder whose name ends in ``.dcm`` or that carries the DICOM
preamble (``DICM`` at byte 128, PS3.10 7.1) is a DICOM file; files are grouped by
SeriesInstanceUID (0020,000E). A series is a volume of CT slices: Modality (0008,0060) ``CT``,
one frame per file, no localizer (scout) images.

**Geometry** (DICOM PS3.3 C.7.6.2.1.1 "Image Position and Orientation", equation C.7.6.2.1-1):
ImageOrientationPatient (0020,0037) holds the direction cosines of the first row, X (the
direction of increasing column index), and of the first column, Y (increasing row index);
ImagePositionPatient (0020,0032) the centre of the first transmitted (top left) pixel, S; both
in the patient coordinate system LPS+ (x to the patient's left, y posterior, z superior), mm.
PixelSpacing (0028,0030, PS3.3 10.7.1.3) is (row spacing ΔY, column spacing ΔX). Pixel (column
i, row j) lies at ``S + X ΔX i + Y ΔY j``. Slices are sorted by the distance of S along the slice
normal ``N = X × Y`` — never by file name or InstanceNumber — and the slice spacing is the
distance between positions along N (never SliceThickness); slices must be evenly spaced, so a
missing slice is refused. The volume is laid out as nibabel lays out a NIfTI (column, row,
slice), so voxel (i, j, k) lies at ``S_0 + X ΔX i + Y ΔY j + D k``, D the step between
consecutive positions; that affine is turned from LPS to NIfTI's RAS+ by negating x and y, as
nibabel's DICOM wrappers and dcm2niix do, and written with ``sform_code`` = ``qform_code`` = 1
(scanner). A gantry tilt (D not along N) is kept exactly in the sform (a sheared affine, voxel
volume ``ΔX ΔY (D · N)``, its determinant); the qform, which cannot hold a shear, gets the
untilted frame (X, Y, N) with the same voxel sizes.

**Values**: stored pixels x RescaleSlope (0028,1053) + RescaleIntercept (0028,1052), per slice,
then :func:`covseg.data.interpret.interpret_intensities` as for every reader.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.interpret import Intensities, IntensityChoice, Storage
from covseg.data.nifti import NIFTI_SUFFIXES, decide_ct_volume
from covseg.data.orientation import DISPLAY_ORIENTATION, Reorientation, reorientation
from covseg.files import one_line, safe_file_name

EXTRA = "pip install 'covseg[dicom]'"
"""How to install the optional packages that read DICOM series and write DICOM SEG."""
SERIES_ALL = "all"
"""``--series all``: every CT series of a folder is a case."""
SPACING_TOLERANCE = (0.01, 0.05)
"""(relative, mm): slice positions may stray from even spacing by the larger of 1 % of the
spacing and 0.05 mm (scanners round positions to 0.01-0.001 mm); more is a missing slice."""
ORIENTATION_TOLERANCE = 1e-3
"""Largest difference between direction cosines of one series' slices (and from unit length)."""
TILT_DEGREES = 0.01
"""A step between slices off the normal by less than this is rounding, not a gantry tilt."""
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SCAN_TAGS = ["SeriesInstanceUID", "SeriesNumber", "SeriesDescription", "Modality", "ImageType",
              "SOPClassUID", "NumberOfFrames"]
_NOT_DICOM = (*NIFTI_SUFFIXES, ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".npy", ".json", ".csv",
              ".txt", ".md")


def import_pydicom(why: str) -> Any:
    """The pydicom module, or a one-line :class:`CovsegError`: ``{why} needs pydicom ...: EXTRA``."""
    try:
        import pydicom
    except ImportError:
        raise CovsegError(f"{why} needs pydicom, which is not installed: {EXTRA}") from None
    return pydicom


def is_dicom_file(path: Path) -> bool:
    """Whether ``path`` is a DICOM file: named ``*.dcm``, or carrying ``DICM`` at byte 128."""
    name = path.name.lower()
    if name.endswith(".dcm"):
        return True
    if name.endswith(_NOT_DICOM) or name == "dicomdir":
        return False
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files under ``folder``, any depth (exports nest them), hidden ones left out."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        parts = path.relative_to(folder).parts
        if not any(part.startswith(".") for part in parts) and path.is_file() and is_dicom_file(path):
            found.append(path)
    return found


@dataclass(frozen=True)
class DicomSeries:
    """The files of one series in a folder (not yet sorted: :func:`read_series` sorts them).

    ``number``: SeriesNumber (None when absent); ``description``: SeriesDescription ("" when
    absent); ``localizer``: ImageType names a LOCALIZER (a scout projection, not a slice).
    """

    folder: Path
    uid: str
    number: int | None
    description: str
    modality: str
    files: tuple[Path, ...]
    localizer: bool = False

    def summary(self) -> str:
        """E.g. ``series 3 'Lung 1.0' (120 CT files, UID 1.2.3)``."""
        title = f"series {self.number if self.number is not None else '?'}"
        if self.description:
            title += f" '{self.description}'"
        kind = f"{self.modality or 'no-modality'}{' localizer' if self.localizer else ''}"
        return f"{title} ({len(self.files)} {kind} files, UID {self.uid})"

    @property
    def where(self) -> str:
        """How messages name the series: ``FOLDER (series 3 'Lung 1.0')``."""
        description = f" '{self.description}'" if self.description else ""
        return f"{self.folder} (series {self.number if self.number is not None else self.uid}{description})"

    def case_name(self) -> str:
        """A folder name from SeriesNumber and SeriesDescription, made safe (e.g. ``3_Lung_1.0``)."""
        parts = [str(self.number)] if self.number is not None else []
        parts += [self.description] if self.description else []
        return safe_file_name("_".join(parts) or f"series_{self.uid[-12:]}")


def _text(dataset: Any, keyword: str) -> str:
    return str(dataset.get(keyword, "") or "").strip()


def _number(value: Any, default: float | None = None) -> Any:
    """A DICOM IS/DS value as int/float; ``default`` when absent or empty."""
    if value is None or str(value).strip() == "":
        return default
    return int(value) if default is None else float(value)


def scan_series(folder: Path) -> list[DicomSeries]:
    """The series of the DICOM files under ``folder``, by SeriesNumber then UID (headers only).

    Raises a one-line :class:`CovsegError` when pydicom is missing or a file is not readable DICOM.
    """
    folder = Path(folder)
    files = dicom_files(folder)
    if not files:
        return []
    pydicom = import_pydicom(f"{folder} holds DICOM files; reading them")
    groups: dict[str, list[tuple[Path, Any]]] = {}
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_SCAN_TAGS)
        except Exception as error:  # pydicom raises many kinds for broken files
            raise CovsegError(f"{path} is not a readable DICOM file: {one_line(error)}") from None
        uid = _text(header, "SeriesInstanceUID")
        if not uid:
            raise CovsegError(f"{path} has no SeriesInstanceUID (0020,000E): it belongs to no series")
        groups.setdefault(uid, []).append((path, header))
    series = []
    for uid, members in groups.items():
        header = members[0][1]
        number = header.get("SeriesNumber")
        image_type = [str(value).upper() for value in (header.get("ImageType") or [])]
        series.append(DicomSeries(
            folder, uid, _number(number), _text(header, "SeriesDescription"),
            _text(header, "Modality").upper(), tuple(path for path, _ in members), "LOCALIZER" in image_type,
        ))
    return sorted(series, key=lambda item: (item.number is None, item.number or 0, item.uid))


def _is_ct_volume(series: DicomSeries) -> bool:
    return series.modality == "CT" and not series.localizer


def _listing(series: Iterable[DicomSeries]) -> str:
    return "; ".join(item.summary() for item in series)


def choose_series(found: Sequence[DicomSeries], choices: Sequence[str], folder: Path) -> list[DicomSeries]:
    """The series of one folder to predict.

    Without ``choices`` the folder must hold exactly one CT series (localizers and other
    modalities left aside); ``choices`` are SeriesInstanceUIDs or SeriesNumbers (``--series``), or
    ``all`` for every CT series. A chosen series that is not CT, or a localizer, is refused.
    Raises a one-line :class:`CovsegError` that lists the folder's series.
    """
    volumes = [item for item in found if _is_ct_volume(item)]
    if not choices:
        if len(volumes) == 1:
            return volumes
        if not volumes:
            raise CovsegError(f"{folder} holds no CT series (covseg segments CT): {_listing(found)}")
        raise CovsegError(f"{folder} holds {len(volumes)} CT series: {_listing(volumes)}; choose with "
                          f"--series NUMBER or --series UID (repeatable), or --series {SERIES_ALL}")
    if SERIES_ALL in choices:
        if not volumes:
            raise CovsegError(f"{folder} holds no CT series (covseg segments CT): {_listing(found)}")
        return volumes
    chosen = [item for item in found if item.uid in choices or str(item.number) in choices]
    for item in chosen:
        if item.modality != "CT":
            raise CovsegError(f"{item.where} is {item.modality or 'without a Modality'}, not CT: covseg "
                              "segments CT")
        if item.localizer:
            raise CovsegError(f"{item.where} is a localizer (scout projection), not a series of slices")
    return chosen


@dataclass(frozen=True)
class DicomVolume:
    """A series read into memory.

    ``intensities``: the values (Z, H, W) in display orientation, decided by
    :func:`covseg.data.interpret.interpret_intensities`; ``reference``: a NIfTI image (no voxels
    of its own) with the series' geometry in the stored layout (column, row, slice), for label
    volumes that overlay the series; ``reoriented``: from that layout to the display;
    ``voxel_size_mm``: (column spacing ΔX, row spacing ΔY, slice spacing along the normal);
    ``sources``: the slices' headers (pixel data dropped) in stored slice order, for DICOM SEG;
    ``tilt_deg``: gantry tilt, the angle between the slice step and the slice normal.
    """

    series: DicomSeries
    intensities: Intensities
    reference: nib.Nifti1Image
    reoriented: Reorientation
    voxel_size_mm: tuple[float, float, float]
    sources: tuple[Any, ...]
    tilt_deg: float = 0.0

    def describe(self) -> str:
        """One line on the geometry, e.g. ``120 slices of 512x512, 0.7 x 0.7 x 1.25 mm``."""
        columns, rows, slices = self.reference.shape[:3]
        sizes = " x ".join(f"{size:.4g}" for size in self.voxel_size_mm)
        text = f"{slices} slices of {columns}x{rows}, {sizes} mm"
        if self.tilt_deg >= TILT_DEGREES:
            text += (f"; gantry tilt {self.tilt_deg:.1f} degrees, kept exactly in the label file's sform "
                     "(its qform is untilted)")
        return text


def _floats(dataset: Any, keyword: str, count: int, path: Path) -> np.ndarray:
    value = dataset.get(keyword)
    try:
        numbers = np.asarray([float(item) for item in value], dtype=np.float64)
    except (TypeError, ValueError):
        numbers = np.zeros(0)
    if numbers.shape != (count,) or not np.all(np.isfinite(numbers)):
        raise CovsegError(f"{path}: {keyword} is {value!r}, not {count} numbers; the slice has no geometry")
    return numbers


def _check_decodable(dataset: Any, path: Path) -> None:
    """Refuse a compressed transfer syntax that no installed pixel decoder reads, naming packages."""
    meta = getattr(dataset, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax is None or not syntax.is_compressed:
        return
    from pydicom.pixels import get_decoder

    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise CovsegError(f"{path}: pixel data compressed as {syntax.name} ({syntax}), which pydicom "
                          "cannot decode") from None
    if not decoder.is_available:
        options = " or ".join(_pip_command(line) for line in decoder.missing_dependencies)
        raise CovsegError(f"{path}: pixel data compressed as {syntax.name} ({syntax}), which no installed "
                          f"package decodes; install one: {options}")


def _pip_command(line: str) -> str:
    """pydicom's ``"pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1"`` as a pip command."""
    _, _, needs = line.partition(" - requires ")
    packages = [part.strip() for part in needs.split(" and ") if part.strip()] or [line.strip()]
    packages = ["python-gdcm" if package.startswith("gdcm") else package for package in packages]
    return "pip install " + " ".join(f"'{package}'" for package in packages)


def _read_slices(series: DicomSeries) -> list[tuple[Path, Any]]:
    pydicom = import_pydicom(f"{series.folder} holds DICOM files; reading them")
    slices = []
    for path in series.files:
        try:
            dataset = pydicom.dcmread(path)
        except Exception as error:  # pydicom raises many kinds for broken files
            raise CovsegError(f"{path} is not a readable DICOM file: {one_line(error)}") from None
        modality = _text(dataset, "Modality").upper()
        if modality != "CT":
            raise CovsegError(f"{path} is {modality or 'without a Modality'}, not CT: covseg segments CT")
        frames = int(dataset.get("NumberOfFrames") or 1)
        if frames != 1:
            raise CovsegError(f"{path} holds {frames} frames (an enhanced, multi-frame CT): covseg reads "
                              "series of single-frame slices (CT Image Storage)")
        if "PixelData" not in dataset:
            raise CovsegError(f"{path} holds no pixel data (PixelData 7FE0,0010)")
        if int(dataset.get("SamplesPerPixel") or 1) != 1:
            raise CovsegError(f"{path} has {dataset.SamplesPerPixel} samples per pixel (colour); CT has one")
        slices.append((path, dataset))
    return slices


@dataclass(frozen=True)
class _Geometry:
    order: list[int]
    affine_lps: np.ndarray
    qform_lps: np.ndarray
    voxel_size: tuple[float, float, float]
    tilt_deg: float


def _geometry(series: DicomSeries, slices: Sequence[tuple[Path, Any]]) -> _Geometry:
    """Sort the slices along the normal, check the spacing and build the affine (module docstring)."""
    first_path, first = slices[0]
    cosines = _floats(first, "ImageOrientationPatient", 6, first_path)
    spacing = _floats(first, "PixelSpacing", 2, first_path)
    rows, columns = int(first.Rows), int(first.Columns)
    row_cosine, column_cosine = cosines[:3], cosines[3:]
    if (abs(np.linalg.norm(row_cosine) - 1) > ORIENTATION_TOLERANCE
            or abs(np.linalg.norm(column_cosine) - 1) > ORIENTATION_TOLERANCE
            or abs(row_cosine @ column_cosine) > ORIENTATION_TOLERANCE):
        raise CovsegError(f"{first_path}: ImageOrientationPatient {list(cosines)} are not two orthogonal "
                          "unit vectors")
    if not np.all(spacing > 0):
        raise CovsegError(f"{first_path}: PixelSpacing {list(spacing)} is not positive")
    row_cosine = row_cosine / np.linalg.norm(row_cosine)
    column_cosine = column_cosine / np.linalg.norm(column_cosine)
    normal = np.cross(row_cosine, column_cosine)
    positions = []
    for path, dataset in slices:
        orientation = _floats(dataset, "ImageOrientationPatient", 6, path)
        if np.max(np.abs(orientation - cosines)) > ORIENTATION_TOLERANCE:
            raise CovsegError(f"{path} has another ImageOrientationPatient than {first_path}: "
                              f"{series.where} is not one volume")
        if (int(dataset.Rows), int(dataset.Columns)) != (rows, columns) or np.max(
                np.abs(_floats(dataset, "PixelSpacing", 2, path) - spacing)) > 1e-4:
            raise CovsegError(f"{path} has another size or PixelSpacing than {first_path}: "
                              f"{series.where} is not one volume")
        positions.append(_floats(dataset, "ImagePositionPatient", 3, path))
    positions_array = np.asarray(positions)
    distances = positions_array @ normal
    order = sorted(range(len(slices)), key=lambda index: distances[index])
    positions_array, distances = positions_array[order], distances[order]
    count = len(order)
    if count == 1:
        thickness = float(first.get("SpacingBetweenSlices") or first.get("SliceThickness") or 0)
        if not thickness > 0:
            raise CovsegError(f"{first_path}: a single slice without SliceThickness has no volume")
        step = normal * thickness
    else:
        gaps = np.diff(distances)
        typical = float(np.median(gaps))
        tolerance = max(SPACING_TOLERANCE[0] * typical, SPACING_TOLERANCE[1])
        paths = [slices[index][0] for index in order]
        if gaps.min() < tolerance:
            at = int(np.argmin(gaps))
            raise CovsegError(
                f"{paths[at]} and {paths[at + 1]} lie at the same position ({distances[at]:.2f} mm along "
                f"the slice normal): {series.where} holds several stacks or acquisitions")
        uneven = int(np.argmax(np.abs(gaps - typical)))
        if abs(gaps[uneven] - typical) > tolerance:
            raise CovsegError(
                f"{series.where}: slices are {typical:.4g} mm apart but {gaps[uneven]:.4g} mm between "
                f"{paths[uneven].name} and {paths[uneven + 1].name}: missing slices (uneven spacing)")
        step = (positions_array[-1] - positions_array[0]) / (count - 1)
        straying = np.abs(positions_array - (positions_array[0] + np.outer(np.arange(count), step))).max()
        if straying > tolerance:
            raise CovsegError(f"{series.where}: slice positions stray {straying:.3g} mm from one line "
                              "(ImagePositionPatient); not one volume")
    slice_spacing = float(step @ normal)
    tilt = math.degrees(math.acos(min(1.0, abs(slice_spacing) / float(np.linalg.norm(step)))))
    affine = np.eye(4)
    affine[:3, 0] = row_cosine * spacing[1]
    affine[:3, 1] = column_cosine * spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = positions_array[0]
    qform = affine.copy()
    qform[:3, 2] = normal * slice_spacing
    return _Geometry(order, affine, qform, (float(spacing[1]), float(spacing[0]), slice_spacing), tilt)


def _reference(geometry: _Geometry, shape: tuple[int, int, int]) -> nib.Nifti1Image:
    image = nib.Nifti1Image(np.broadcast_to(np.int16(0), shape), _LPS_TO_RAS @ geometry.affine_lps)
    image.set_qform(_LPS_TO_RAS @ geometry.qform_lps, code="scanner")
    image.set_sform(_LPS_TO_RAS @ geometry.affine_lps, code="scanner")
    image.header.set_xyzt_units("mm")
    return image


def _pixels(path: Path, dataset: Any) -> np.ndarray:
    try:
        return dataset.pixel_array
    except Exception as error:  # decoders raise many kinds
        raise CovsegError(f"{path}: its pixel data cannot be decoded: {one_line(error)}") from None


def _rescale(dataset: Any) -> tuple[float, float]:
    return _number(dataset.get("RescaleSlope"), 1.0), _number(dataset.get("RescaleIntercept"), 0.0)


def read_series(
    series: DicomSeries, choice: IntensityChoice, target: str = DISPLAY_ORIENTATION
) -> DicomVolume:
    """Read, sort and check a CT series (see the module docstring); values in display order ``target``.

    Raises a one-line :class:`CovsegError` naming the file or series: pydicom missing, not CT,
    multi-frame, compressed in a syntax no installed package decodes (naming the packages that
    would), slices of different orientation or size, two slices at one position, uneven spacing
    (missing slices), positions off one line, values that are not chest CT.
    """
    slices = _read_slices(series)
    for path, dataset in slices:
        _check_decodable(dataset, path)
    geometry = _geometry(series, slices)
    ordered = [slices[index] for index in geometry.order]
    stored = np.stack([_pixels(path, dataset) for path, dataset in ordered], axis=-1)  # (rows, columns, Z)
    dtype = stored.dtype
    raw = stored.transpose(1, 0, 2)  # nibabel layout: (column, row, slice)
    scalings = [_rescale(dataset) for _, dataset in ordered]
    storage_format = "DICOM"
    scaling: tuple[float, float] | None = scalings[0]
    if len(set(scalings)) > 1:
        storage_format = "DICOM (rescale varies per slice)"
        slopes = np.asarray([slope for slope, _ in scalings], np.float32)
        intercepts = np.asarray([intercept for _, intercept in scalings], np.float32)
        raw = raw.astype(np.float32) * slopes + intercepts
    elif scaling == (1.0, 0.0):
        scaling = None
    else:
        raw = raw.astype(np.float32) * np.float32(scaling[0]) + np.float32(scaling[1])
    reference = _reference(geometry, raw.shape)
    reoriented = reorientation(reference.affine, target, series.where)
    decided = decide_ct_volume(raw, Storage(storage_format, dtype, scaling), choice, series.where, reoriented)
    headers = []
    for _, dataset in ordered:
        del dataset.PixelData  # the SEG writer needs the headers only
        headers.append(dataset)
    return DicomVolume(series, decided, reference, reoriented, geometry.voxel_size, tuple(headers),
                       geometry.tilt_deg)
