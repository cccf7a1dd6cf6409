"""One case from file to outputs: read, predict, write labels, overlays and the lesion report.

Output folder ``OUT/<case>/``, where ``<case>`` is :attr:`Case.name` (made safe from the input's
file name by :func:`covseg.inference.inputs.discover_cases`, and checked again here with
:func:`covseg.files.child_path`: nothing is ever written outside ``OUT``):

- ``labels.nii.gz`` (a volume or DICOM series: a uint8 label map with the input's geometry) or
  ``labels.png`` (an image: pixel value = label); with ``--format dicom-seg`` a DICOM series gets
  ``labels.seg.dcm`` instead (:mod:`covseg.inference.dicom_seg`);
- ``overlays/slice_NNN.png`` (a volume: display slice NNN, counted from 0) or ``overlay.png``;
- ``report.json`` and ``report.csv`` (:mod:`covseg.inference.report`).

Everything is computed in memory first and every file is written atomically, so a failure never
leaves a half-written file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from covseg.core.errors import CovsegError
from covseg.data.intensity import normalise_channels
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import write_label_volume
from covseg.files import atomic_write, child_path
from covseg.inference.dicom_seg import SEG_SUFFIX, check_dicom_seg, write_dicom_seg
from covseg.inference.inputs import Case, CaseData, read_case, read_lung_mask
from covseg.inference.predict import ModelSettings, predict_slices
from covseg.inference.report import LesionReport, measure_lesions, write_report
from covseg.onnx import OnnxSegmenter
from covseg.visualize import overlay, save_png

OVERLAY_CHOICES: tuple[str, ...] = ("lesions", "all", "none")
LABEL_FORMATS: tuple[str, ...] = ("nifti", "dicom-seg")
"""``--format``: NIfTI label volumes (PNG for images), or DICOM SEG for DICOM series."""


@dataclass(frozen=True)
class CaseResult:
    """What one case produced."""

    report: LesionReport
    labels_path: Path
    overlay_paths: tuple[Path, ...]
    report_paths: tuple[Path, Path]


def check_outputs(cases: Sequence[Case], out: Path, overwrite: bool) -> None:
    """Refuse to write into an existing case folder unless ``overwrite`` (before any work starts)."""
    if out.exists() and not out.is_dir():
        raise CovsegError(f"--out {out} is a file; give a folder")
    for case in cases:
        folder = child_path(out, case.name)
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise CovsegError(f"{folder} exists (an earlier prediction?); pass --overwrite to replace it")


def check_label_format(cases: Sequence[Case], label_format: str, class_names: Sequence[str]) -> None:
    """Refuse a ``--format`` the inputs cannot have, before any work: DICOM SEG references its
    source series, so every input must be one (and highdicom must be installed)."""
    if label_format not in LABEL_FORMATS:
        raise CovsegError(f"--format {label_format}: expected one of {', '.join(LABEL_FORMATS)}")
    if label_format == "dicom-seg":
        other = next((case for case in cases if case.kind != "dicom"), None)
        if other is not None:
            raise CovsegError(f"--format dicom-seg references the source DICOM series, but {other.path} "
                              "is not one; predict it without --format")
        check_dicom_seg(class_names)


def pair_lung_masks(cases: Sequence[Case], lung_masks: Sequence[Path]) -> dict[str, Path]:
    """``--lung-mask`` files in the order of the volumes (NIfTI, DICOM) among the inputs, one each."""
    if not lung_masks:
        return {}
    volumes = [case for case in cases if case.is_volume]
    if len(lung_masks) != len(volumes):
        raise CovsegError(
            f"{len(lung_masks)} --lung-mask file(s) for {len(volumes)} volume(s): "
            "give one per volume, in the order of the inputs"
        )
    for path in lung_masks:
        if not Path(path).is_file():
            raise CovsegError(f"--lung-mask {path} does not exist")
    return {case.name: Path(path) for case, path in zip(volumes, lung_masks, strict=True)}


def _write_png_labels(labels: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda handle: Image.fromarray(labels).save(handle, format="PNG"))


def _overlay_slices(labels: np.ndarray, choice: str) -> list[int]:
    if choice not in OVERLAY_CHOICES:
        raise CovsegError(f"--overlays {choice}: expected one of {', '.join(OVERLAY_CHOICES)}")
    if choice == "none":
        return []
    if choice == "all":  # images always get their overlay unless "none"
        return list(range(len(labels)))
    return [int(index) for index in np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))]


def _write_volume_labels(
    labels: np.ndarray, data: CaseData, folder: Path, settings: ModelSettings, model_label: str, fmt: str
) -> Path:
    """``labels.nii.gz`` in the input's own layout and geometry, or ``labels.seg.dcm`` over the series."""
    if fmt == "dicom-seg":
        if data.dicom is None:
            raise CovsegError(f"--format dicom-seg: {data.case.where} is not a DICOM series")
        path = folder / f"labels{SEG_SUFFIX}"
        write_dicom_seg(labels, data.dicom, settings.class_names, path, model_label)
        return path
    path = folder / "labels.nii.gz"
    write_label_volume(labels, data.reference, path, settings.class_names, data.reoriented.target)
    return path


def run_case(
    case: Case,
    segmenter: OnnxSegmenter,
    settings: ModelSettings,
    out: Path,
    *,
    model_label: str,
    batch_size: int = 8,
    lung_mask: Path | None = None,
    overlays: str = "lesions",
    on_batch: Callable[[int], None] | None = None,
    data: CaseData | None = None,
    label_format: str = "nifti",
) -> CaseResult:
    """Predict one case and write its outputs to ``out/<case>/`` (see the module docstring)."""
    if data is None:
        choice = IntensityChoice("8bit" if settings.scale_8bit else "auto", spelling="predict")
        data = read_case(case, choice, settings.orientation)
    lung = read_lung_mask(lung_mask, data) if lung_mask is not None else None
    labels = predict_slices(
        segmenter, data.slices, data.intensity, settings, batch_size, str(case.path), on_batch
    )
    report = measure_lesions(
        case.name,
        case.where,
        model_label,
        labels,
        settings.class_names,
        data.voxel_ml,
        data.spacing_mm,
        lung,
    )
    report = replace(report, input_intensity=data.assumed, non_finite_as_air=data.replaced,
                     orientation=data.orientation)
    folder = child_path(out, case.name)
    shown = _overlay_slices(labels, overlays if data.reference is not None or overlays == "none" else "all")
    pictures = [
        overlay(normalise_channels(data.slices[index], data.intensity, settings.normalisation), labels[index])
        for index in shown
    ]
    if data.reference is not None:
        labels_path = _write_volume_labels(labels, data, folder, settings, model_label, label_format)
        digits = max(3, len(str(len(labels) - 1)))
        overlay_paths = [folder / "overlays" / f"slice_{index:0{digits}d}.png" for index in shown]
        for stale in (folder / "overlays").glob("slice_*.png"):  # from an earlier --overwrite'd run
            if stale not in overlay_paths:
                stale.unlink()
    else:
        labels_path = folder / "labels.png"
        _write_png_labels(labels[0], labels_path)
        overlay_paths = [folder / "overlay.png"] if shown else []
    for picture, path in zip(pictures, overlay_paths, strict=True):
        save_png(picture, path)
    report_paths = write_report(report, folder)
    return CaseResult(report, labels_path, tuple(overlay_paths), report_paths)
