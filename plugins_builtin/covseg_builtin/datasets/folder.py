"""``folder``: 2-D slices in ``images/`` with label masks of the same name in ``masks/``.

Files: PNG, JPG, TIFF, WebP, NPY or 2-D NIfTI; an image and its mask pair by name without
extension (``images/case_001.png`` with ``masks/case_001.png`` or ``masks/case_001.npy``). Images
are grayscale or RGB; what their values mean (8-bit grey levels or Hounsfield units) is decided per
file by :func:`covseg.plugins.interpret_intensities` (options ``intensity``, ``hu_offset``,
``nan``); a folder must be all one kind. Masks are read by :func:`covseg.plugins.read_mask` (label
values, palette, 1-bit, 16-bit, one-hot; lossy JPEG refused); ``mask_values=0,255`` maps
stored values to labels (binary masks). Without ``masks/`` the slices are unlabelled.

The option ``labels`` declares what the mask values mean, names in value order
(``labels=background,infection`` for one-class infection masks such as Zenodo's COVID-19-CT-Seg);
without it the masks are MedSeg's four classes. A mask value beyond the declared classes is
refused naming the file, and ``mask_values`` must list one stored value per class.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from covseg.plugins import (
    INTENSITY_OPTIONS,
    LABELS_HELP,
    LABELS_OPTION,
    MEDSEG_LABELS,
    PIL_SUFFIXES,
    CovsegError,
    CTSlices,
    DatasetEntry,
    IntensityChoice,
    LabelSet,
    check_known,
    check_mask_values,
    hookimpl,
    is_nifti,
    nifti_stem,
    parse_labels,
    parse_mask_values,
    read_image,
    read_mask,
)

KINDS = "PNG, JPG, TIFF, WebP, NPY or 2-D NIfTI"
OPTIONS = {"mask_values": "stored mask values mapped to labels 0, 1, ..., e.g. 0,255",
           LABELS_OPTION: LABELS_HELP, **INTENSITY_OPTIONS}


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


def load_folder(path: Path, mask_values: tuple[float, ...] | None = None,
                choice: IntensityChoice | None = None, labels: LabelSet = MEDSEG_LABELS) -> CTSlices:
    """Read ``path/images`` and, when present, ``path/masks`` (see the module docstring); the masks
    hold the classes of ``labels``."""
    choice = choice or IntensityChoice()
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
    arrays, read_masks, notes, replaced = [], [], Counter(), 0
    first_path, intensity = None, None
    for name, image_path in images.items():
        decided = read_image(image_path, choice)
        if intensity is None:
            first_path, intensity = image_path, decided.kind
        elif decided.kind != intensity:
            raise CovsegError(f"{image_path} holds {decided.assumed} but {first_path} holds "
                              f"{'8-bit' if intensity == 'uint8' else 'Hounsfield'} values; use one kind")
        arrays.append(decided.values)
        notes[decided.assumed] += 1
        replaced += decided.replaced
        if masks is not None:
            mask_path = masks[name]
            mask = read_mask(mask_path, mask_values, labels)
            if mask.shape != decided.values.shape[:2]:
                height, width = decided.values.shape[:2]
                raise CovsegError(f"{image_path} is {height}x{width} but its mask "
                                  f"{mask_path} is {mask.shape[0]}x{mask.shape[1]}")
            read_masks.append(mask)
    lines = [f"{note}: {count} file{'s' * (count > 1)}" for note, count in notes.items()]
    if replaced:
        lines.append(f"{replaced:,} NaN/infinite values read as air (nan=air)")
    return CTSlices(ids=list(images), images=arrays, masks=read_masks if masks is not None else None,
                    intensity=intensity, source=str(path), notes=lines, labels=labels)


def load(path: Path | None, options: Mapping[str, str]) -> CTSlices:
    """The ``folder`` dataset entry: options mask_values, labels, intensity, hu_offset, nan."""
    if path is None:
        raise CovsegError("dataset folder needs --data FOLDER with images/ and masks/")
    check_known(options, OPTIONS, "folder")
    declared = LABELS_OPTION in options
    labels = parse_labels(options[LABELS_OPTION]) if declared else MEDSEG_LABELS
    mask_values = parse_mask_values(options["mask_values"]) if "mask_values" in options else None
    if mask_values is not None:
        check_mask_values(mask_values, labels, declared)
    return load_folder(Path(path), mask_values, IntensityChoice.from_options(options), labels)


@hookimpl
def covseg_datasets() -> list[DatasetEntry]:
    return [DatasetEntry("folder", load, f"images/ and masks/ with matching names ({KINDS}).")]
