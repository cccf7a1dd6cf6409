"""``medseg``: the original MedSeg COVID-19 NIfTI files, read with nibabel.

A folder holding ``tr_im.nii.gz`` (HU-like floats, 512x512x100), ``tr_mask.nii.gz`` (float64 labels
0..3) and optionally ``tr_lungmasks_updated.nii.gz`` (lung masks), as ``covseg data fetch medseg``
leaves it. Slices come out in display orientation (see :mod:`covseg.data.nifti`) with ids
``medseg_001``..``medseg_100`` (z + 1), the same names the published PNG slices use, so one split
file serves both. Options name other files of the folder: ``images=val_im.nii.gz masks=none`` reads
the 10 unlabelled validation slices. What the image volume's values mean is decided once for the
whole volume by :func:`covseg.plugins.interpret_intensities` (options ``intensity``,
``hu_offset``, ``nan``, shared with the ``folder`` data set and ``covseg predict``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from covseg.plugins import (
    INTENSITY_OPTIONS,
    MEDSEG_LABELS,
    CovsegError,
    CTSlices,
    DatasetEntry,
    IntensityChoice,
    check_known,
    display_spacing,
    hookimpl,
    nifti_stem,
    option_name,
    read_ct_volume,
    read_label_volume,
    read_mask_volume,
)

IMAGES, MASKS, LUNG_MASKS = "tr_im.nii.gz", "tr_mask.nii.gz", "tr_lungmasks_updated.nii.gz"
NONE = "none"
OPTIONS = {
    "images": f"image volume in the folder (default {IMAGES})",
    "masks": f"label volume (default {MASKS}; 'none' for unlabelled slices)",
    "lung_masks": f"lung mask volume (default {LUNG_MASKS} when present; 'none' to skip)",
    **INTENSITY_OPTIONS,
}


def _check_shape(path: Path, shape: tuple[int, ...], image_path: Path, image_shape: tuple[int, ...]) -> None:
    if shape != image_shape:
        raise CovsegError(f"{path} has {shape[0]} slices of {shape[1]}x{shape[2]} but {image_path} has "
                          f"{image_shape[0]} slices of {image_shape[1]}x{image_shape[2]}")


def load_medseg(path: Path, options: Mapping[str, str]) -> CTSlices:
    """Read a MedSeg folder, or one image volume with its masks beside it (see the module docstring)."""
    if not path.exists():
        raise CovsegError(f"{path} does not exist (get MedSeg with `covseg data fetch medseg --dest {path}`)")
    folder = path if path.is_dir() else path.parent
    image_path = folder / options.get("images", IMAGES) if path.is_dir() else path
    if not image_path.is_file():
        raise CovsegError(f"{image_path} does not exist: a MedSeg folder holds {IMAGES} and {MASKS}")
    decided, reference = read_ct_volume(image_path, IntensityChoice.from_options(options))
    volume = decided.values
    spacing = display_spacing(reference, image_path)
    masks = None
    mask_name = options.get("masks", MASKS)
    if mask_name != NONE:
        mask_path = folder / mask_name
        if not mask_path.is_file():
            raise CovsegError(f"{mask_path} does not exist: MedSeg masks go beside {image_path.name} "
                              f"(or {option_name()} masks=none for unlabelled slices)")
        labels, _ = read_label_volume(mask_path, reference=reference)
        _check_shape(mask_path, labels.shape, image_path, volume.shape)
        masks = list(labels)
    lung_masks = None
    lung_name = options.get("lung_masks", LUNG_MASKS)
    lung_path = folder / lung_name
    if lung_name != NONE and ("lung_masks" in options or lung_path.is_file()):
        lungs, _ = read_mask_volume(lung_path, reference=reference)
        _check_shape(lung_path, lungs.shape, image_path, volume.shape)
        lung_masks = list(lungs)
    stem = nifti_stem(image_path)
    prefix = "medseg" if stem == nifti_stem(Path(IMAGES)) else stem
    count = volume.shape[0]
    return CTSlices(
        ids=[f"{prefix}_{z + 1:03d}" for z in range(count)],
        images=list(volume),
        masks=masks,
        intensity=decided.kind,
        source=str(image_path),
        spacing=[spacing] * count,
        lung_masks=lung_masks,
        notes=[decided.summary],
        labels=MEDSEG_LABELS,
    )


def load(path: Path | None, options: Mapping[str, str]) -> CTSlices:
    """The ``medseg`` dataset entry: options images, masks, lung_masks."""
    if path is None:
        raise CovsegError(f"dataset medseg needs --data FOLDER with {IMAGES} and {MASKS} "
                          "(`covseg data fetch medseg --dest data/medseg` downloads them)")
    check_known(options, OPTIONS, "medseg")
    return load_medseg(Path(path), options)


@hookimpl
def covseg_datasets() -> list[DatasetEntry]:
    return [DatasetEntry("medseg", load, f"MedSeg COVID-19 NIfTI volumes ({IMAGES}, {MASKS}).")]

