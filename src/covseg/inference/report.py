"""The lesion report of one case: voxels and millilitres per class, and the share of lung affected.

Volume of a class = its voxel count x the voxel volume (product of the three NIfTI zooms, mm^3,
/ 1000 -> ml). With a lung mask, ``percent_of_lung`` = voxels of the class inside the lung / lung
voxels x 100. Images carry no pixel size: their report has pixel counts and no volumes. The counts
are those of the written labels, after any post-processing (:mod:`covseg.inference.postprocess`),
whose removals the report lists; with a lung mask it holds the severity block
(:mod:`covseg.inference.severity`). A run over several cases also writes ``summary.csv``, one row
per case (:func:`summary_csv`).
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covseg.core.entries import ALL_LESIONS
from covseg.core.errors import CovsegError
from covseg.files import write_json, write_text

CSV_COLUMNS = (
    "case",
    "label",
    "class",
    "voxels",
    "volume_ml",
    "percent_of_lung",
    "removed_voxels",
    "removed_ml",
)
SUMMARY_CSV = "summary.csv"
"""The per-run table in ``OUT``: one row per case."""


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
    tta: str = "none"
    """Test-time augmentation (:func:`covseg.tta.describe`)."""
    postprocessing: tuple[dict[str, Any], ...] = ()
    """Each post-processing step in order: its setting and what it removed per class
    (:meth:`covseg.inference.postprocess.Removed.to_dict`)."""
    severity: dict[str, Any] | None = None
    """Share of each lung involved and the severity score (:class:`covseg.inference.severity.Severity`)."""
    model_card: str = ""
    """Which model card applies (a MODEL.md beside the ONNX file, the card in its metadata, or none)."""

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


def removed_by_class(report: LesionReport) -> dict[str, tuple[int, float | None]]:
    """Voxels and ml that post-processing removed, per class name and ``all-lesions``, all steps summed."""
    totals: dict[str, tuple[int, float | None]] = {}
    for step in report.postprocessing:
        for name, removed in step["removed"].items():
            voxels, ml = totals.get(name, (0, 0.0 if removed["volume_ml"] is not None else None))
            volume = None if ml is None or removed["volume_ml"] is None else ml + removed["volume_ml"]
            totals[name] = (voxels + removed["voxels"], volume)
    if totals:
        voxels = sum(value[0] for value in totals.values())
        volumes = [value[1] for value in totals.values()]
        totals[ALL_LESIONS] = (voxels, None if None in volumes else sum(volumes))
    return totals


def report_csv(report: LesionReport) -> str:
    """One row per class and one for all lesions; empty cells where a value does not apply
    (``removed_*``: empty without post-processing)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    removed = removed_by_class(report)
    for measure in report.classes:
        removed_voxels, removed_ml = removed.get(measure.name, ("", None))
        writer.writerow(
            [
                report.case,
                "" if measure.label is None else measure.label,
                measure.name,
                measure.voxels,
                _cell(measure.volume_ml),
                _cell(measure.percent_of_lung),
                removed_voxels,
                _cell(removed_ml),
            ]
        )
    return buffer.getvalue()


def _postprocessing_text(report: LesionReport) -> str:
    return "; ".join(step["setting"] for step in report.postprocessing)


def summary_row(report: LesionReport) -> dict[str, Any]:
    """One case as a row of ``summary.csv``: volumes per class, lung shares, severity.

    Raises :class:`CovsegError` if a class's column would take the name of another column (class
    names are checked where they enter, :func:`covseg.core.entries.check_class_names`; this guard
    keeps a name that slipped past from overwriting a number).
    """
    head: dict[str, Any] = {
        "case": report.case,
        "input": report.input,
        "model": report.model,
        "tta": report.tta,
        "postprocessing": _postprocessing_text(report),
        "voxel_ml": _cell(report.voxel_ml),
        "lung_ml": _cell(report.lung_ml),
    }
    tail: dict[str, Any] = {}
    severity = report.severity or {}
    lungs = {item["lung"]: item for item in severity.get("lungs", ())}
    for side in ("lungs", "left", "right"):
        item = lungs.get(side, {})
        if side != "lungs":
            tail[f"{side}_lung_ml"] = _cell(item.get("lung_ml"))
        tail[f"{side}_involved_percent"] = _cell(item.get("percent"))
        tail[f"{side}_band"] = item.get("band", "")
    tail["severity_score"] = "" if severity.get("score") is None else severity["score"]
    tail["sides"] = severity.get("sides", "")
    row = dict(head)
    for measure in report.classes:
        for column, value in ((f"{measure.name}_voxels", measure.voxels),
                              (f"{measure.name}_ml", _cell(measure.volume_ml)),
                              (f"{measure.name}_percent_of_lung", _cell(measure.percent_of_lung))):
            if column in row or column in tail:
                raise CovsegError(f"{report.case}: class '{measure.name}' would overwrite the summary.csv "
                                  f"column {column}; rename the class")
            row[column] = value
    return {**row, **tail}


def summary_csv(reports: list[LesionReport]) -> str:
    """``summary.csv``: one row per case (:func:`summary_row`); columns in first-seen order."""
    rows = [summary_row(report) for report in reports]
    columns = list(dict.fromkeys(column for row in rows for column in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    """A number for a CSV cell (6 significant digits), empty for None."""
    return "" if value is None else f"{value:.6g}"


def write_report(report: LesionReport, folder: Path) -> tuple[Path, Path]:
    """``report.json`` and ``report.csv`` in ``folder``, each written atomically."""
    json_path, csv_path = folder / "report.json", folder / "report.csv"
    write_json(json_path, report.to_dict())
    write_text(csv_path, report_csv(report))
    return json_path, csv_path
