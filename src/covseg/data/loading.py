"""Load slices by dataset name or by path, through the registered dataset plugins."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from covseg.core.calls import plugin_call
from covseg.core.entries import CTSlices, LabelSet
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.data.interpret import HU_LIMITS
from covseg.data.nifti import is_nifti
from covseg.data.options import DATASET_OPTION, options_named

DEFAULT_DATASET = "phantom"


def resolve_dataset(dataset: str | None, data: Path | None) -> str:
    """The dataset name to use: the given one, the embedded phantom, or detected from the path.

    A folder with ``images/`` is ``folder``; a NIfTI file, or a folder of NIfTI volumes, is
    ``medseg``.
    """
    if dataset:
        return dataset
    if data is None:
        return DEFAULT_DATASET
    data = Path(data)
    if not data.exists():
        raise CovsegError(f"data path {data} does not exist")
    if data.is_dir() and (data / "images").is_dir():
        return "folder"
    if is_nifti(data) or (data.is_dir() and any(is_nifti(path) for path in data.iterdir())):
        return "medseg"
    raise CovsegError(
        f"cannot tell the format of {data}: expected images/ and masks/ (folder) or NIfTI volumes "
        "such as tr_im.nii.gz (medseg); or name the format with --dataset"
    )


def load_slices(dataset: str | None, data: Path | None, options: Mapping[str, str] | None = None,
                option: str = DATASET_OPTION) -> CTSlices:
    """Slices of a dataset: ``dataset`` by name (see ``covseg data list``), or detected from ``data``.

    ``option`` is the command-line option that set ``options``; errors that advise an option name it
    (``--test-dataset-option`` for the test data).

    Neither given: the embedded ``phantom``. The result is checked (matching shapes, uint8 labels
    within its label set, unique ids, finite intensities within the range of their kind) so that a third-party
    plugin's mistakes surface as one line here.
    """
    name = resolve_dataset(dataset, data)
    provided = get_registry().get("dataset", name)
    entry = provided.entry
    if entry.needs_path and data is None:
        raise CovsegError(f"dataset {name} needs a path: --data PATH")
    with options_named(option), plugin_call(provided, "to load"):  # a plugin's fault: one line
        slices = entry.load(Path(data) if data is not None else None, dict(options or {}))
    check_slices(slices, name)
    return slices


def _check_values(image: np.ndarray, intensity: str, where: str) -> None:
    """NaN would reach training as a NaN loss, out-of-range values as a silent wrong input."""
    if image.dtype.kind not in "uif":
        raise CovsegError(f"{where} holds {image.dtype} values, not numbers")
    if image.dtype.kind == "f":
        bad = int(image.size - np.count_nonzero(np.isfinite(image)))
        if bad:
            raise CovsegError(f"{where} holds {bad:,} NaN or infinite values (a reader must refuse them "
                              "or replace them, e.g. by air)")
    low, high = (0.0, 255.0) if intensity == "uint8" else HU_LIMITS
    if image.size and (float(image.min()) < low or float(image.max()) > high):
        unit = "8-bit" if intensity == "uint8" else "HU"
        raise CovsegError(f"{where} holds values {float(image.min()):g}..{float(image.max()):g}, "
                          f"outside {low:g}..{high:g} ({unit})")


def check_slices(slices: CTSlices, dataset: str) -> None:
    """Raise a one-line :class:`CovsegError` when a plugin's :class:`CTSlices` breaks the contract."""
    if not isinstance(slices, CTSlices):
        raise CovsegError(f"dataset {dataset} returned {type(slices).__name__}, not CTSlices")
    where = f"dataset {dataset} ({slices.source})"
    count = len(slices.ids)
    if count == 0:
        raise CovsegError(f"{where} has no slices")
    if len(set(slices.ids)) != count:
        duplicate = next(name for name in slices.ids if slices.ids.count(name) > 1)
        raise CovsegError(f"{where}: slice id '{duplicate}' appears twice")
    if not isinstance(slices.labels, LabelSet):
        raise CovsegError(f"{where}: labels is a {type(slices.labels).__name__}, not a LabelSet")
    classes = len(slices.labels)
    if slices.intensity not in ("hu", "uint8"):
        raise CovsegError(f"{where}: intensity '{slices.intensity}' is not 'hu' or 'uint8'")
    for field in ("images", "masks", "spacing", "lung_masks"):
        values = getattr(slices, field)
        if values is not None and len(values) != count:
            raise CovsegError(f"{where}: {len(values)} {field} for {count} slice ids")
    for index, name in enumerate(slices.ids):
        image = slices.images[index]
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise CovsegError(f"{where}: slice {name} has shape {image.shape}, not (H, W) or (H, W, 3)")
        _check_values(image, slices.intensity, f"{where}: slice {name}")
        if slices.masks is None:
            continue
        mask = slices.masks[index]
        if mask.shape != image.shape[:2] or mask.dtype != np.uint8:
            raise CovsegError(f"{where}: mask of slice {name} is {mask.dtype} {mask.shape}, "
                              f"expected uint8 {image.shape[:2]}")
        if mask.size and int(mask.max()) >= classes:
            raise CovsegError(f"{where}: mask of slice {name} has label {int(mask.max())} beyond its "
                              f"labels ({slices.labels.describe()})")
