"""The lesion report of one case: voxels and millilitres per class, and the share of lung affected.

Volume of a class = its voxel count x the voxel volume (product of the three NIfTI zooms, mm^3,
/ 1000 -> ml). With a lung mask, ``percent_of_lung`` = voxels of the class inside the lung / lung
voxels x 100. Images carry no pixel size: their report has pixel counts and no volumes.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covseg.files import write_json, write_text

CSV_COLUMNS = ("case", "label", "class", "voxels", "volume_ml", "percent_of_lung")
ALL_LESIONS = "all-lesions"


@dataclass(frozen=True)
class ClassMeasure:
    """One class (or all lesion classes together, label None) of one case."""

    label: int | None
    name: str
    voxels: int
    volume_ml: float | None
    percent_of_lung: float | None


@dataclass(frozen=True)
class LesionReport:
    case: str
    input: str
    model: str
    shape: tuple[int, ...]
    spacing_mm: tuple[float, ...] | None
    voxel_ml: float | None
    lung_voxels: int | None
    lung_ml: float | None
    classes: tuple[ClassMeasure, ...]
    input_intensity: str = ""
    """How the input's values were read (:attr:`covseg.data.interpret.Intensities.summary`)."""
    non_finite_as_air: int = 0
    """NaN/infinite input values read as air (``--nan air``); 0 otherwise."""
    orientation: str = ""
    """How a volume was oriented for the model (:meth:`covseg.data.orientation.Reorientation.describe`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def measure(self, name: str) -> ClassMeasure:
        """The measure of the class called ``name`` (or ``all-lesions``)."""
        return next(measure for measure in self.classes if measure.name == name)


def _share(voxels: int, lung_voxels: int | None) -> float | None:
    if lung_voxels is None:
        return None
    return 100.0 * voxels / lung_voxels if lung_voxels else 0.0


def measure_lesions(
    case: str,
    input_path: str,
    model: str,
    labels: np.ndarray,
    class_names: tuple[str, ...],
    voxel_ml: float | None,
    spacing_mm: tuple[float, ...] | None = None,
    lung: np.ndarray | None = None,
) -> LesionReport:
    """Count every non-background class of ``labels`` (and all lesions), with volumes and lung shares."""
    counts = np.bincount(labels.ravel(), minlength=len(class_names))
    inside = np.bincount(labels[lung].ravel(), minlength=len(class_names)) if lung is not None else None
    lung_voxels = int(lung.sum()) if lung is not None else None

    def volume(voxels: int) -> float | None:
        return voxels * voxel_ml if voxel_ml is not None else None

    classes = []
    for label in range(1, len(class_names)):
        voxels = int(counts[label])
        share = _share(int(inside[label]), lung_voxels) if inside is not None else None
        classes.append(ClassMeasure(label, class_names[label], voxels, volume(voxels), share))
    lesion_voxels = int(counts[1:].sum())
    lesion_share = _share(int(inside[1:].sum()), lung_voxels) if inside is not None else None
    classes.append(ClassMeasure(None, ALL_LESIONS, lesion_voxels, volume(lesion_voxels), lesion_share))
    return LesionReport(
        case,
        input_path,
        model,
        tuple(labels.shape),
        spacing_mm,
        voxel_ml,
        lung_voxels,
        volume(lung_voxels) if lung_voxels is not None else None,
        tuple(classes),
    )


def report_csv(report: LesionReport) -> str:
    """One row per class and one for all lesions; empty cells where a value does not apply."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for measure in report.classes:
        writer.writerow(
            [
                report.case,
                "" if measure.label is None else measure.label,
                measure.name,
                measure.voxels,
                _cell(measure.volume_ml),
                _cell(measure.percent_of_lung),
            ]
        )
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def write_report(report: LesionReport, folder: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.csv`` in ``folder``, each written atomically."""
    json_path, csv_path = folder / "report.json", folder / "report.csv"
    write_json(json_path, report.to_dict())
    write_text(csv_path, report_csv(report))
    return json_path, csv_path
