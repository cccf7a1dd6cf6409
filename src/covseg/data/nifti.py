"""NIfTI volumes and slices: header checks, the orientation rule, CT reading and label writing.

Orientation rule (:mod:`covseg.data.orientation`): a displayed slice is ``raw[:, :, z].T``, where
``raw`` is the array nibabel returns (axes: column, row, slice), after the volume is brought to
the display orientation (LPS: patient's right on the image left, anterior up) when its header has
one. A header whose ``qform_code`` and ``sform_code`` are both 0 has none — MedSeg's files are
such, and their masks were drawn on ``raw[:, :, z].T`` as stored — so the volume is shown as
stored. Written label volumes go back through the same steps and keep the input's affine and
header geometry, so they overlay the input volume exactly in any NIfTI viewer.

Header numbers are checked before they size anything: the dimensions must fit the file (a gzip
file holds at most :data:`GZIP_MAX_RATIO` times its size), at most :data:`MAX_VOXELS` voxels, and
voxel sizes must be finite and within :data:`VOXEL_SIZE_LIMITS_MM` (volumes in ml come from them).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from covseg import CLASS_NAMES
from covseg.core.errors import CovsegError
from covseg.data.interpret import Intensities, IntensityChoice, Storage, interpret_intensities
from covseg.data.labels import to_labels
from covseg.data.orientation import DISPLAY_ORIENTATION, Reorientation, reorientation
from covseg.files import one_line, write_bytes

NIFTI_SUFFIXES = (".nii", ".nii.gz")
MAX_VOXELS = 2**31
"""Most voxels covseg reads from one file (a 1024x1024x2048 volume); a header asking more is refused."""
GZIP_MAX_RATIO = 1032
"""Deflate's largest compression factor (zlib technical details, https://zlib.net/zlib_tech.html):
a .nii.gz file of n bytes cannot hold more than 1032 n bytes of voxels."""
VOXEL_SIZE_LIMITS_MM = (1e-3, 1e3)
"""Voxel sizes (mm) accepted from a header: 1 micrometre to 1 metre; anything else, zero, negative
or NaN is a broken header that would make every volume in ml wrong."""
_UNIT_TO_MM = {0: ("unknown", 1.0), 1: ("meter", 1000.0), 2: ("mm", 1.0), 3: ("micron", 1e-3)}
"""NIfTI spatial unit codes (the low 3 bits of xyzt_units) and their size in mm."""
_GEOMETRY_FIELDS = ("pixdim", "xyzt_units", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                    "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z", "dim_info")
_READ_ERRORS = (nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError, EOFError, OSError,
                zlib.error, ValueError, TypeError, struct.error, OverflowError, IndexError, KeyError)


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


def image_reorientation(
    image: nib.Nifti1Image, target: str = DISPLAY_ORIENTATION, where: object = "the volume"
) -> Reorientation:
    """How ``image``'s stored array becomes display order: by its affine when its header has an
    orientation (``qform_code`` or ``sform_code`` > 0), else as stored (see the module docstring).
    Raises a one-line :class:`CovsegError` naming ``where`` for an affine without orientation."""
    header = image.header
    oriented = int(header["qform_code"]) > 0 or int(header["sform_code"]) > 0
    return reorientation(image.affine if oriented else None, target, str(where))


def _reason(error: BaseException) -> str:
    message = one_line(error)
    if isinstance(error, EOFError | zlib.error | gzip.BadGzipFile):
        return f"corrupt or truncated gzip ({message})"
    return message


def _check_size(path: Path, image: nib.Nifti1Image) -> None:
    """Refuse header dimensions that do not fit the file, before anything is allocated."""
    shape = tuple(int(size) for size in image.shape)
    if not shape or min(shape) < 1:
        raise CovsegError(f"{path}: header dimensions {shape} hold no voxel")
    voxels = math.prod(shape)
    dtype = image.get_data_dtype()
    if voxels > MAX_VOXELS:
        raise CovsegError(f"{path}: header dimensions {shape} make {voxels:,} voxels, more than the "
                          f"{MAX_VOXELS:,} covseg reads from one file")
    needed = voxels * dtype.itemsize
    size = path.stat().st_size
    if path.name.lower().endswith(".gz"):
        if needed > size * GZIP_MAX_RATIO:
            raise CovsegError(
                f"{path}: header dimensions {shape} of {dtype} need {needed:,} bytes, more than a "
                f"gzip file of {size:,} bytes can hold; the header is wrong or the file truncated")
    elif int(image.dataobj.offset) + needed > size:
        raise CovsegError(
            f"{path}: header dimensions {shape} of {dtype} need {needed:,} bytes after byte "
            f"{int(image.dataobj.offset):,}, but the file has {size:,}; truncated or wrong header")


def load_raw(path: Path) -> tuple[np.ndarray, nib.Nifti1Image, Storage]:
    """The array (after the header's scl_slope/scl_inter), the nibabel image and what was stored.

    Header dimensions are checked against the file before the voxels are read. Trailing singleton
    axes (X, Y, Z, 1) are dropped. Raises a one-line :class:`CovsegError` for anything unreadable.
    """
    path = Path(path)
    if not path.is_file():
        raise CovsegError(f"{path} does not exist")
    try:
        with nib.imageglobals.LoggingOutputSuppressor():  # covseg reports header faults itself
            image = nib.load(path)
        if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image):
            raise CovsegError(f"{path} is a {type(image).__name__}, not a NIfTI file")
        _check_size(path, image)
        raw = np.asanyarray(image.dataobj)
        slope = float(getattr(image.dataobj, "slope", 1.0))
        inter = float(getattr(image.dataobj, "inter", 0.0))
    except CovsegError:
        raise
    except _READ_ERRORS as error:
        raise CovsegError(f"{path} is not a readable NIfTI file: {_reason(error)}") from None
    if raw.dtype.kind not in "uifb":
        raise CovsegError(f"{path} holds {raw.dtype} voxels (e.g. RGB or complex); expected numbers")
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    scaling = None if (slope, inter) == (1.0, 0.0) else (slope, inter)
    return raw, image, Storage("NIfTI", image.get_data_dtype(), scaling)


def _volume_raw(path: Path) -> tuple[np.ndarray, nib.Nifti1Image, Storage]:
    raw, image, storage = load_raw(path)
    if raw.ndim != 3:
        raise CovsegError(
            f"{path} is {raw.ndim}-D with shape {tuple(raw.shape)}: expected a 3-D volume (X, Y, slices)"
        )
    return raw, image, storage


def _stored_header(image: nib.Nifti1Image, path: Path) -> nib.Nifti1Header:
    """The header as the file holds it: nibabel's own reading silently turns a zero voxel size into
    1 mm and a negative one into its absolute value, which would hide a broken header."""
    try:
        with nib.openers.ImageOpener(path) as handle:
            return type(image.header).from_fileobj(handle, check=False)
    except _READ_ERRORS as error:
        raise CovsegError(f"{path} is not a readable NIfTI file: {_reason(error)}") from None


def voxel_size_mm(image: nib.Nifti1Image, path: Path) -> tuple[float, float, float]:
    """The (x, y, z) voxel size in mm from the stored header's pixdim and spatial unit (xyzt_units).

    ``image`` must have been read from ``path``. A header without a unit is read in mm, the NIfTI
    convention. Raises a one-line :class:`CovsegError` for a size that is NaN, infinite, zero,
    negative or outside :data:`VOXEL_SIZE_LIMITS_MM`: it would make every volume in ml wrong.
    """
    header = _stored_header(image, path)
    zooms = tuple(float(zoom) for zoom in header["pixdim"][1 : 1 + min(3, len(image.shape))])
    zooms += (1.0,) * (3 - len(zooms))
    code = int(header["xyzt_units"]) & 0x07
    if code not in _UNIT_TO_MM:
        raise CovsegError(f"{path}: header spatial unit code {code} (xyzt_units) is not a NIfTI unit "
                          "(0 unknown, 1 metre, 2 mm, 3 micrometre)")
    unit, factor = _UNIT_TO_MM[code]
    sizes = tuple(zoom * factor for zoom in zooms)
    low, high = VOXEL_SIZE_LIMITS_MM
    if not all(math.isfinite(size) and low <= size <= high for size in sizes):
        shown = " x ".join(f"{zoom:g}" for zoom in zooms)
        raise CovsegError(
            f"{path}: header voxel size (pixdim) {shown} {unit if unit != 'unknown' else 'mm'} is not a "
            f"size between {low:g} and {high:g} mm; volumes in ml would be wrong, fix the header")
    return sizes


def read_volume(path: Path, target: str = DISPLAY_ORIENTATION) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A 3-D volume as float32 (Z, H, W) in display orientation (``target``, see
    :func:`image_reorientation`), values as the header scales them, and the image."""
    raw, image, _ = _volume_raw(path)
    display = image_reorientation(image, target, path).to_display(raw)
    return np.ascontiguousarray(display, dtype=np.float32), image


def decide_ct_volume(
    raw: np.ndarray, storage: Storage, choice: IntensityChoice, where: str, reoriented: Reorientation
) -> Intensities:
    """A stored CT array (X, Y, Z) in display order (Z, H, W), its intensities decided by
    :func:`covseg.data.interpret.interpret_intensities` over the whole volume; every volume
    reader (NIfTI, DICOM) ends here. Raises a one-line :class:`CovsegError` naming ``where``."""
    decided = interpret_intensities(reoriented.to_display(raw), storage, choice, where)
    return replace(decided, values=np.ascontiguousarray(decided.values))


def read_ct_volume(
    path: Path, choice: IntensityChoice, target: str = DISPLAY_ORIENTATION
) -> tuple[Intensities, nib.Nifti1Image]:
    """A CT volume (Z, H, W) in display orientation (``target``, see :func:`image_reorientation`),
    its intensities decided by :func:`covseg.data.interpret.interpret_intensities` over the
    whole volume, and the image.

    The voxel size is checked (:func:`voxel_size_mm`). Raises a one-line :class:`CovsegError`.
    """
    raw, image, storage = _volume_raw(path)
    voxel_size_mm(image, path)
    return decide_ct_volume(raw, storage, choice, str(path), image_reorientation(image, target, path)), image


def _check_like(image: nib.Nifti1Image, path: Path, reference: nib.Nifti1Image | None) -> None:
    """Refuse a mask whose header has an orientation when its image's has none, or the reverse:
    one would be reoriented and the other not, and nothing says whether their voxels line up."""
    if reference is None:
        return
    mine = image_reorientation(image, where=path).stored
    theirs = image_reorientation(reference, where=reference.get_filename()).stored
    if (mine is None) != (theirs is None):
        def said(codes: str | None) -> str:
            return "no orientation (qform_code and sform_code 0)" if codes is None else f"orientation {codes}"

        raise CovsegError(f"{path} has {said(mine)} but {reference.get_filename()} has {said(theirs)}: "
                          "covseg cannot tell whether their voxels line up; give both the same header")


def read_mask_values(
    path: Path, target: str = DISPLAY_ORIENTATION, reference: nib.Nifti1Image | None = None
) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A mask volume's values, float32 (Z, H, W) in display order: 0 is outside, any other value
    inside (a lung mask may give each lung its own value); NaN and infinite values are refused.

    With ``reference`` (the image it belongs to), a mask that has an orientation where the image
    has none, or the reverse, is refused (:func:`image_reorientation` would treat them apart).
    """
    volume, image = read_volume(path, target)
    _check_like(image, path, reference)
    bad = int(volume.size - np.count_nonzero(np.isfinite(volume)))
    if bad:
        raise CovsegError(f"{path}: {bad:,} mask values are NaN or infinite; a mask holds 0 and non-zero")
    return volume, image


def read_mask_volume(
    path: Path, target: str = DISPLAY_ORIENTATION, reference: nib.Nifti1Image | None = None
) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A binary mask volume (e.g. lung masks): bool (Z, H, W), non-zero is inside
    (:func:`read_mask_values`)."""
    values, image = read_mask_values(path, target, reference)
    return values != 0, image


def read_label_volume(
    path: Path, target: str = DISPLAY_ORIENTATION, reference: nib.Nifti1Image | None = None
) -> tuple[np.ndarray, nib.Nifti1Image]:
    """A label volume (e.g. MedSeg's float64 masks) as uint8 (Z, H, W) labels 0..3, display order;
    ``reference`` as for :func:`read_mask_volume`."""
    raw, image, _ = _volume_raw(path)
    _check_like(image, path, reference)
    labels = to_labels(raw, str(path))
    return np.ascontiguousarray(image_reorientation(image, target, path).to_display(labels)), image


def read_slice(path: Path) -> tuple[np.ndarray, Storage]:
    """A 2-D NIfTI slice in display orientation (H, W), scaled values, and what was stored.

    (X, Y), (X, Y, 1) and channel-first (1, X, Y) files are 2-D slices; anything with more than two
    axes longer than 1 is refused.
    """
    raw, _, storage = load_raw(path)
    sizes = [size for size in raw.shape if size != 1]
    if len(sizes) != 2:
        raise CovsegError(
            f"{path} has shape {tuple(raw.shape)}: a folder data set takes 2-D slices "
            "(use --dataset medseg for volumes)"
        )
    return np.ascontiguousarray(raw.reshape(sizes).T), storage


def display_spacing(
    image: nib.Nifti1Image, path: Path, target: str = DISPLAY_ORIENTATION
) -> tuple[float, float]:
    """(row, column) pixel size in mm of display-oriented slices, from :func:`voxel_size_mm`."""
    _, row, column = image_reorientation(image, target, path).display_sizes(voxel_size_mm(image, path))
    return row, column


def label_description(class_names: Sequence[str]) -> str:
    """The NIfTI ``descrip`` of a label volume, e.g. ``covseg labels: 0 background, 1 ground-glass``."""
    text = "covseg labels: " + ", ".join(f"{label} {name}" for label, name in enumerate(class_names))
    return text.encode("ascii", "replace")[:79].decode("ascii")  # descrip holds 80 bytes, NUL-ended


def write_derived_volume(
    volume: np.ndarray,
    reference: nib.Nifti1Image,
    path: Path,
    target: str = DISPLAY_ORIENTATION,
    describe: Callable[[nib.Nifti1Header], None] | None = None,
) -> None:
    """Write a volume computed from ``reference`` (labels, probabilities), atomically, so that it
    overlays the reference in any viewer.

    ``volume``: (Z, H, W) in display order ``target`` (as the reference was read), in the dtype to
    store. It goes back through :func:`image_reorientation` of the reference into its own layout.
    Kept from the reference: the affine, qform and sform with their codes, voxel sizes and units;
    dropped: its extensions, scaling and display range. ``describe(header)`` then sets what the
    map is (intent, scaling, display range, ``descrip``). ``.nii.gz`` names are gzip-compressed.
    """
    path = Path(path)
    reoriented = image_reorientation(reference, target, path)
    expected = reoriented.display_shape(reference.shape[:3])
    if volume.ndim != 3 or tuple(volume.shape) != expected:
        raise CovsegError(
            f"{path}: a volume of shape {tuple(volume.shape)} does not match the reference volume "
            f"(display shape {expected})"
        )
    header = reference.header.copy()
    header.extensions.clear()
    header.set_data_dtype(volume.dtype)
    output = type(reference)(np.ascontiguousarray(reoriented.to_stored(volume)), reference.affine,
                             header=header)
    out = output.header
    for field in _GEOMETRY_FIELDS:  # as stored, so that viewers place both files identically
        out[field] = reference.header[field]
    out.set_slope_inter(1.0, 0.0)
    out["cal_min"], out["cal_max"] = 0.0, 0.0
    out["descrip"] = b""
    out["aux_file"] = b""
    if describe is not None:
        describe(out)
    data = output.to_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=6)
    write_bytes(path, data)


def write_label_volume(
    labels: np.ndarray,
    reference: nib.Nifti1Image,
    path: Path,
    class_names: Sequence[str] = CLASS_NAMES,
    target: str = DISPLAY_ORIENTATION,
) -> None:
    """Write (Z, H, W) labels (display order ``target``, as read) as a label map that overlays the
    reference (:func:`write_derived_volume`): uint8 without scaling, intent ``NIFTI_INTENT_LABEL``
    (1002), display range cal_min 0 / cal_max the highest label, ``descrip`` naming the classes."""

    def describe(header: nib.Nifti1Header) -> None:
        header.set_intent("label", (), name="labels")
        header["cal_min"], header["cal_max"] = 0.0, float(len(class_names) - 1)
        header["descrip"] = label_description(class_names)

    write_derived_volume(labels.astype(np.uint8), reference, path, target, describe)
