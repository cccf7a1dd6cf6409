"""``folder``: 2-D slices in ``images/`` with label masks of the same name in ``masks/``.

Files: PNG, JPG, TIFF, NPY or 2-D NIfTI; an image and its mask pair by name without extension
(``images/case_001.png`` with ``masks/case_001.png`` or ``masks/case_001.npy``). Images are
grayscale or RGB; 8-bit images give ``intensity="uint8"``, integer or float images of other types
(NPY, NIfTI, 16-bit or float TIFF) are taken as Hounsfield units. A folder must be all one kind.
Masks hold label values 0..3; ``mask_values=0,255`` maps stored values to labels (binary masks).
Without ``masks/`` the slices are unlabelled (prediction only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from covseg.data.labels import parse_mask_values, to_labels
from covseg.data.nifti import is_nifti, nifti_stem
from covseg.data.options import check_known
from covseg.data.slice_files import PIL_SUFFIXES, read_pixels
from covseg.plugins import CovsegError, CTSlices, DatasetEntry, hookimpl

KINDS = "PNG, JPG, TIFF, NPY or 2-D NIfTI"
OPTIONS = {"mask_values": "stored mask values mapped to labels 0, 1, ..., e.g. 0,255"}



def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def slice_name(path: Path) -> str:
    """The name that pairs an image with its mask: the file name without its extension."""
    return nifti_stem(path) if is_nifti(path) else path.stem


def list_slices(folder: Path) -> dict[str, Path]:
    """Slice files of a folder by name, naturally sorted; hidden files are skipped."""
    if not folder.is_dir():
        raise CovsegError(f"{folder} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir(), key=lambda path: _natural_key(path.name)):
        if path.name.startswith("."):
            continue
        if not (path.is_file() and (path.suffix.lower() in (*PIL_SUFFIXES, ".npy") or is_nifti(path))):
            raise CovsegError(f"{path} is not a slice file ({KINDS}); remove it from {folder}")
        name = slice_name(path)
        if name in found:
            raise CovsegError(f"{path} and {found[name]} have the same name; keep one")
        found[name] = path
    if not found:
        raise CovsegError(f"{folder} is empty: put slices ({KINDS}) in it")
    return found


def _intensity(array: np.ndarray) -> str:
    return "uint8" if array.dtype == np.uint8 else "hu"


def load_folder(path: Path, mask_values: tuple[float, ...] | None = None) -> CTSlices:
    """Read ``path/images`` and, when present, ``path/masks`` (see the module docstring)."""
    if not path.exists():
        raise CovsegError(f"{path} does not exist")
    if not (path / "images").is_dir():
        raise CovsegError(f"{path} has no images/ folder (expected images/ and masks/ with matching names)")
    images = list_slices(path / "images")
    masks = list_slices(path / "masks") if (path / "masks").exists() else None
    if masks is not None:
        for name, image_path in images.items():
            if name not in masks:
                raise CovsegError(f"image {image_path} has no mask named {name}.* in {path / 'masks'}")
        for name, mask_path in masks.items():
            if name not in images:
                raise CovsegError(f"mask {mask_path} has no image named {name}.* in {path / 'images'}")
    arrays, labels = [], []
    first_path, intensity = None, None
    for name, image_path in images.items():
        array = read_pixels(image_path)
        kind = _intensity(array)
        if intensity is None:
            first_path, intensity = image_path, kind
        elif kind != intensity:
            raise CovsegError(f"{image_path} holds {array.dtype} values but {first_path} holds "
                              f"{'8-bit' if intensity == 'uint8' else 'Hounsfield'} values; use one kind")
        if kind == "hu" and array.ndim != 2:
            raise CovsegError(f"{image_path} is a colour image of {array.dtype} values: Hounsfield "
                              "slices have one channel")
        arrays.append(array if kind == "uint8" else array.astype(np.float32))
        if masks is not None:
            mask_path = masks[name]
            stored = read_pixels(mask_path, mask=True)
            if stored.shape != array.shape[:2]:
                raise CovsegError(f"{image_path} is {array.shape[0]}x{array.shape[1]} but its mask "
                                  f"{mask_path} is {stored.shape[0]}x{stored.shape[1]}")
            labels.append(to_labels(stored, str(mask_path), mask_values))
    return CTSlices(ids=list(images), images=arrays, masks=labels if masks is not None else None,
                    intensity=intensity, source=str(path))


def load(path: Path | None, options: Mapping[str, str]) -> CTSlices:
    """The ``folder`` dataset entry: option mask_values."""
    if path is None:
        raise CovsegError("dataset folder needs --data FOLDER with images/ and masks/")
    check_known(options, OPTIONS, "folder")
    mask_values = parse_mask_values(options["mask_values"]) if "mask_values" in options else None
    return load_folder(Path(path), mask_values)


@hookimpl
def covseg_datasets() -> list[DatasetEntry]:
    return [DatasetEntry("folder", load, f"images/ and masks/ with matching names ({KINDS}).")]
