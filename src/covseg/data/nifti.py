"""NIfTI volumes and slices, and the one place that handles their orientation.

Orientation rule: a displayed slice is ``raw[:, :, z].T``, where ``raw`` is the array nibabel
returns (axes: column, row, slice). So a volume in display orientation is
``raw.transpose(2, 1, 0)`` with axes (slice, row, column), and writing goes back through the same
transpose (it is its own inverse). This is how MedSeg's radiologists drew the masks and how the
published PNG slices look (patient's right on the image left, anterior up). MedSeg's headers carry
orientation codes ('L', 'A', 'S') that do not describe that display, so covseg does not reorient by
the affine: it keeps the affine and header untouched and only transposes, which makes written label
volumes overlay the input volume exactly in any NIfTI viewer.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from covseg.files import one_line, write_bytes
from covseg.core.errors import CovsegError
from covseg.data.labels import to_labels

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    """Whether the file name says NIfTI (``.nii`` or ``.nii.gz``)."""
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path: Path) -> str:
    """File name without ``.nii.gz`` / ``.nii``."""
    name = path.name
    for suffix in NIFTI_SUFFIXES[::-1]:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def raw_to_display(raw: np.ndarray) -> np.ndarray:
    """nibabel's (column, row, slice) array -> (slice, row, column) display order (a view)."""
    return raw.transpose(2, 1, 0)


def display_to_raw(volume: np.ndarray) -> np.ndarray:
    """(slice, row, column) display order -> nibabel's (column, row, slice) layout (a view)."""
    return volume.transpose(2, 1, 0)


def _reason(error: BaseException) -> str:
    message = one_line(error)
    if isinstance(error, EOFError | zlib.error | gzip.BadGzipFile):
        return f"corrupt or truncated gzip ({message})"
    return message


def load_raw(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The stored array (scaled by the header's slope when it has one) and the nibabel image."""
    path = Path(path)
    if not path.is_file():
        raise CovsegError(f"{path} does not exist")
    try:
        image = nib.load(path)
        raw = np.asanyarray(image.dataobj)
    except (nib.filebasedimages.ImageFileError, EOFError, OSError, zlib.error, ValueError) as error:
        raise CovsegError(f"{path} is not a readable NIfTI file: {_reason(error)}") from None
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
        raise CovsegError(f"{path} is a {type(image).__name__}, not a NIfTI file")
    # Trailing singleton axes (X, Y, Z, 1) carry no data: drop them.
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    return raw, image


def _volume_raw(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    raw, image = load_raw(path)
    if raw.ndim != 3:
        raise CovsegError(
            f"{path} is {raw.ndim}-D with shape {tuple(raw.shape)}: expected a 3-D volume (X, Y, slices)"
        )
    return raw, image


def read_volume(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A 3-D volume as float32 (Z, H, W) in display orientation, and its nibabel image."""
    raw, image = _volume_raw(path)
    return np.ascontiguousarray(raw_to_display(raw), dtype=np.float32), image


def read_label_volume(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A label volume (e.g. MedSeg's float64 masks) as uint8 (Z, H, W) labels 0..3, display order."""
    raw, image = _volume_raw(path)
    labels = to_labels(raw, str(path))
    return np.ascontiguousarray(raw_to_display(labels)), image


def read_slice(path: Path) -> np.ndarray:
    """A 2-D NIfTI slice (X, Y) or (X, Y, 1) in display orientation (H, W), stored dtype."""
    raw, _ = load_raw(path)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise CovsegError(
            f"{path} has shape {tuple(raw.shape)}: a folder data set takes 2-D slices "
            "(use --dataset medseg for volumes)"
        )
    return np.ascontiguousarray(raw.T)


def display_spacing(image: nib.Nifti1Image) -> tuple[float, float]:
    """(row, column) pixel size in mm of display-oriented slices, from the header's zooms."""
    zooms = image.header.get_zooms()
    return float(zooms[1]), float(zooms[0])


def write_label_volume(labels: np.ndarray, reference: nib.Nifti1Image, path: Path) -> None:
    """Write (Z, H, W) uint8 labels (display order) with the reference's affine and header, atomically.

    The array goes back to the raw layout, so the file overlays the reference volume; ``.nii.gz``
    names are gzip-compressed.
    """
    path = Path(path)
    expected = tuple(reversed(reference.shape[:3]))
    if labels.ndim != 3 or tuple(labels.shape) != expected:
        raise CovsegError(
            f"{path}: labels of shape {tuple(labels.shape)} do not match the reference volume "
            f"(display shape {expected})"
        )
    header = reference.header.copy()
    header.set_data_dtype(np.uint8)
    output = nib.Nifti1Image(np.ascontiguousarray(display_to_raw(labels.astype(np.uint8))),
                             reference.affine, header=header)
    output.header.set_slope_inter(1.0, 0.0)
    data = output.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    write_bytes(path, data)
