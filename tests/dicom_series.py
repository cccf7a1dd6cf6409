"""Small DICOM CT series written with pydicom, and the affine the DICOM standard gives them.

:func:`write_series` stores (Z, rows, columns) HU slices as a CT series (CT Image Storage, one
file per slice, uint16 = HU + 1024 with RescaleIntercept -1024) at positions ``first + k step``;
:func:`expected_affine` builds the voxel-to-RAS affine of that volume independently of covseg,
from DICOM PS3.3 C.7.6.2.1.1 (equation C.7.6.2.1-1), with x and y negated for RAS.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def rotated_axial(degrees: float) -> tuple[float, ...]:
    """An axial orientation turned by ``degrees`` about the patient's z axis (an oblique series)."""
    angle = np.radians(degrees)
    row = (np.cos(angle), np.sin(angle), 0.0)
    column = (-np.sin(angle), np.cos(angle), 0.0)
    return (*row, *column)


def normal_of(orientation: Sequence[float]) -> np.ndarray:
    return np.cross(np.asarray(orientation[:3]), np.asarray(orientation[3:]))


def expected_affine(
    orientation: Sequence[float], pixel_spacing: Sequence[float], first: Sequence[float],
    step: Sequence[float],
) -> np.ndarray:
    """Voxel (column i, row j, slice k) -> RAS mm: S + X dX i + Y dY j + D k, then x, y negated."""
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(orientation[:3]) * pixel_spacing[1]
    lps[:3, 1] = np.asarray(orientation[3:]) * pixel_spacing[0]
    lps[:3, 2] = step
    lps[:3, 3] = first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def write_series(
    folder: Path,
    hu: np.ndarray,
    *,
    orientation: Sequence[float] = AXIAL,
    pixel_spacing: Sequence[float] = (0.7, 0.8),
    first: Sequence[float] = (-20.0, -30.0, 100.0),
    step: Sequence[float] | None = None,
    thickness: float = 2.5,
    series_number: int = 3,
    description: str = "Lung 1.0",
    modality: str = "CT",
    series_uid: str | None = None,
    study_uid: str | None = None,
    names: Sequence[str] | None = None,
    order: Sequence[int] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    pixel_data: bytes | None = None,
    intercept: float | None = -1024.0,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
) -> list[Path]:
    """Write ``hu`` (Z, rows, columns; slice k at ``first + k step``) as one series in ``folder``.

    ``step`` defaults to the normal times ``thickness``; ``names`` are the file names (default
    ``IM{k:04d}``, no suffix: the DICOM preamble says what they are); ``order`` writes slice
    ``order[n]`` to the n-th name with the n-th InstanceNumber, so neither says where a slice is.
    ``pixel_data`` replaces the encoded pixels (e.g. a compressed stream with ``transfer_syntax``).
    Pixels are stored as uint16 HU + 1024; ``intercept`` None leaves out RescaleSlope/Intercept.
    """
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.asarray(hu)
    count, rows, columns = hu.shape
    step = normal_of(orientation) * thickness if step is None else np.asarray(step, np.float64)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or "1.2.826.0.1.3680043.8.498.1"
    frame_uid = "1.2.826.0.1.3680043.8.498.2"
    order = list(range(count)) if order is None else list(order)
    names = [f"IM{index:04d}" for index in range(count)] if names is None else list(names)
    paths = []
    for position, index in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = transfer_syntax
        dataset = Dataset()
        dataset.file_meta = meta
        dataset.SOPClassUID = CTImageStorage
        dataset.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        dataset.PatientName = "Phantom^Chest"
        dataset.PatientID = "PHANTOM-1"
        dataset.PatientBirthDate = ""
        dataset.PatientSex = "O"
        dataset.StudyInstanceUID = study_uid
        dataset.StudyID = "1"
        dataset.StudyDate = "20240101"
        dataset.StudyTime = "120000"
        dataset.AccessionNumber = "A1"
        dataset.ReferringPhysicianName = ""
        dataset.SeriesInstanceUID = series_uid
        dataset.SeriesNumber = series_number
        dataset.SeriesDescription = description
        dataset.Modality = modality
        dataset.Manufacturer = "covseg tests"
        dataset.FrameOfReferenceUID = frame_uid
        dataset.PositionReferenceIndicator = ""
        dataset.ImageType = list(image_type)
        dataset.InstanceNumber = position + 1
        dataset.ImageOrientationPatient = [f"{value:.10g}" for value in orientation]
        dataset.ImagePositionPatient = [f"{value:.10g}" for value in np.asarray(first) + index * step]
        dataset.PixelSpacing = [f"{value:.10g}" for value in pixel_spacing]
        dataset.SliceThickness = thickness
        dataset.Rows, dataset.Columns = rows, columns
        dataset.SamplesPerPixel = 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
        dataset.PixelRepresentation = 0
        if intercept is not None:
            dataset.RescaleIntercept = f"{intercept:g}"
            dataset.RescaleSlope = 1
            dataset.RescaleType = "HU"
        if pixel_data is None:
            stored = hu[index] - (intercept if intercept is not None else -1024.0)
            dataset.PixelData = np.ascontiguousarray(stored).astype(np.uint16).tobytes()
        else:
            dataset.PixelData = pixel_data
            dataset["PixelData"].VR = "OB"
        path = folder / names[position]
        pydicom.dcmwrite(path, dataset, enforce_file_format=True)
        paths.append(path)
    return paths
