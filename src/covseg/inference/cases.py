"""One case from file to outputs: read, predict, post-process, write labels, pictures and the report.

Output folder ``OUT/<case>/``, where ``<case>`` is :attr:`Case.name` (made safe from the input's
file name by :func:`covseg.inference.inputs.discover_cases`, and checked again here with
:func:`covseg.files.child_path`: nothing is ever written outside ``OUT``):

- ``labels.nii.gz`` (a volume or DICOM series: a uint8 label map with the input's geometry, in the
  input's own layout) or ``labels.png`` (an image: pixel value = label), after any post-processing
  (:mod:`covseg.inference.postprocess`); with ``--format dicom-seg`` a DICOM series gets
  ``labels.seg.dcm`` instead (:mod:`covseg.inference.dicom_seg`);
- ``overlays/slice_NNN.png`` (a volume: display slice NNN, counted from 0) or ``overlay.png``, each
  with a caption (case, slice, model, colour legend); ``montage.png``: the lesion slices of a volume;
- ``probabilities/`` or ``probabilities.npy`` with ``--save-probabilities``
  (:mod:`covseg.inference.probabilities`);
- ``report.json`` and ``report.csv`` (:mod:`covseg.inference.report`; with a lung mask the severity
  block of :mod:`covseg.inference.severity`).

Everything is computed in memory first and every file is written atomically, so a failure never
leaves a half-written file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from covseg.core.errors import CovsegError
from covseg.data.intensity import check_input_kind, normalise_channels
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import is_nifti, write_label_volume
from covseg.data.orientation import DISPLAY_ORIENTATION
from covseg.files import atomic_write, check_creatable, child_path
from covseg.inference.dicom_seg import SEG_SUFFIX, check_dicom_seg, write_dicom_seg
from covseg.inference.inputs import Case, CaseData, read_case, read_lung_labels
from covseg.inference.postprocess import Removed, remove_small_lesions, restrict_to_lung
from covseg.inference.predict import ModelSettings, predict_slices
from covseg.inference.probabilities import ProbabilityStore, write_probabilities
from covseg.inference.report import SUMMARY_CSV, LesionReport, measure_lesions, write_report
from covseg.inference.severity import Severity, assess_severity
from covseg.inference.timing import NO_TIMER, StageTimer
from covseg.onnx import OnnxSegmenter, cpu_cores
from covseg.tta import describe, flip_set
from covseg.visualize import captioned, montage, overlay, save_png

OVERLAY_CHOICES: tuple[str, ...] = ("lesions", "all", "none")
LABEL_FORMATS: tuple[str, ...] = ("nifti", "dicom-seg")
"""``--format``: NIfTI label volumes (PNG for images), or DICOM SEG for DICOM series."""
MONTAGE_FILE = "montage.png"
MONTAGE_MAX_SLICES = 36
"""A montage shows at most this many lesion slices, evenly spaced over those with a lesion."""


@dataclass(frozen=True)
class PredictOptions:
    """What ``covseg predict`` does beyond labels, overlays and the report (its options, in one place).

    ``tta``: a mode of :data:`covseg.tta.FLIP_SETS`; ``save_probabilities``: write the class
    probabilities; ``restrict_to_lung``: lesions outside the lung mask removed (needs a lung mask);
    ``min_lesion_ml``: lesions smaller than this removed (volumes only); ``montage``: a picture of
    the lesion slices of each volume; ``model_card``: which model card applies, for the report.
    """

    tta: str = "none"
    save_probabilities: bool = False
    restrict_to_lung: bool = False
    min_lesion_ml: float | None = None
    montage: bool = True
    model_card: str = ""

    def check(self, cases: Sequence[Case], lung_masks: dict[str, Path]) -> None:
        """Refuse settings that cannot apply to ``cases`` before any work starts (one line each)."""
        flip_set(self.tta)
        images = [case for case in cases if case.kind == "image"]
        if self.min_lesion_ml is not None:
            if not np.isfinite(self.min_lesion_ml) or self.min_lesion_ml < 0:
                raise CovsegError(f"--min-lesion-ml {self.min_lesion_ml}: must be a finite number >= 0")
            if images:
                raise CovsegError(
                    f"--min-lesion-ml needs voxel sizes in mm, and {images[0].path} is an image without "
                    "them; predict images without it"
                )
        if self.restrict_to_lung:
            if not lung_masks:
                raise CovsegError(
                    "--restrict-to-lung needs a lung mask: give --lung-mask FILE for each volume"
                )
            if images:
                raise CovsegError(
                    f"--restrict-to-lung needs a lung mask, and {images[0].path} is an image, which takes "
                    "none; predict images without it"
                )


@dataclass(frozen=True)
class CaseResult:
    """What one case produced."""

    report: LesionReport
    labels_path: Path
    overlay_paths: tuple[Path, ...]
    report_paths: tuple[Path, Path]
    probability_paths: tuple[Path, ...] = ()
    montage_path: Path | None = None
    severity: Severity | None = None


def check_outputs(cases: Sequence[Case], out: Path, overwrite: bool) -> None:
    """Refuse to write into an existing case folder or summary unless ``overwrite`` (before any work
    starts), and a case whose folder would be the run's summary file."""
    if out.exists() and not out.is_dir():
        raise CovsegError(f"--out {out} is a file; give a folder")
    check_creatable(out, f"--out {out}")  # a read-only --out is refused before the model is read
    for case in cases:
        if case.name.casefold() == SUMMARY_CSV.casefold():
            raise CovsegError(
                f"{case.path}: its case folder would be {out / case.name}, the run's summary "
                "file; rename the input"
            )
        folder = child_path(out, case.name)
        if folder.exists() and any(folder.iterdir()) and not overwrite:
            raise CovsegError(f"{folder} exists (an earlier prediction?); pass --overwrite to replace it")
    summary = out / SUMMARY_CSV
    if summary.exists() and not overwrite:
        raise CovsegError(f"{summary} exists (an earlier prediction?); pass --overwrite to replace it")


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
        if not is_nifti(Path(path)):
            raise CovsegError(f"--lung-mask {path}: expected a NIfTI file (.nii, .nii.gz) with the "
                              "volume's geometry")
    return {case.name: Path(path) for case, path in zip(volumes, lung_masks, strict=True)}


def _write_png_labels(labels: np.ndarray, path: Path) -> None:
    atomic_write(path, lambda handle: Image.fromarray(labels).save(handle, format="PNG"))


def lesion_slices(labels: np.ndarray) -> list[int]:
    """Indices of the slices (axis 0) that hold any lesion voxel."""
    return [int(index) for index in np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))]


def _overlay_slices(labels: np.ndarray, choice: str) -> list[int]:
    if choice not in OVERLAY_CHOICES:
        raise CovsegError(f"--overlays {choice}: expected one of {', '.join(OVERLAY_CHOICES)}")
    if choice == "none":
        return []
    if choice == "all":  # images always get their overlay unless "none"
        return list(range(len(labels)))
    return lesion_slices(labels)


def montage_slices(lesions: Sequence[int], limit: int = MONTAGE_MAX_SLICES) -> list[int]:
    """All of ``lesions`` up to ``limit``; beyond, ``limit`` of them evenly spaced, first and last kept."""
    if len(lesions) <= limit:
        return list(lesions)
    picks = np.unique(np.linspace(0, len(lesions) - 1, limit).round().astype(int))
    return [lesions[index] for index in picks]


def in_parallel(jobs: Sequence[Callable[[], object]]) -> None:
    """Run ``jobs`` on a thread per core (PNG encoding and NumPy release the GIL); the first
    failure is raised once all have ended (each file is written atomically, so none is half-written)."""
    if len(jobs) <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(max_workers=min(len(jobs), cpu_cores())) as pool:
        futures = [pool.submit(job) for job in jobs]
    for future in futures:
        future.result()


def postprocess(
    labels: np.ndarray,
    data: CaseData,
    lung_values: np.ndarray | None,
    options: PredictOptions,
    class_names: tuple[str, ...],
) -> tuple[np.ndarray, list[Removed]]:
    """The labels after ``--restrict-to-lung`` then ``--min-lesion-ml``, and what each removed."""
    steps = []
    if options.restrict_to_lung:
        if lung_values is None:
            raise CovsegError(f"--restrict-to-lung: no --lung-mask for {data.case.path}")
        labels, removed = restrict_to_lung(labels, lung_values != 0, class_names, data.voxel_ml)
        steps.append(removed)
    if options.min_lesion_ml is not None:
        if data.voxel_ml is None:
            raise CovsegError(f"--min-lesion-ml: {data.case.path} has no voxel size")
        labels, removed = remove_small_lesions(labels, options.min_lesion_ml, data.voxel_ml, class_names)
        steps.append(removed)
    return labels, steps


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
    options: PredictOptions = PredictOptions(),
    timer: StageTimer = NO_TIMER,
    label_format: str = "nifti",
) -> CaseResult:
    """Predict one case and write its outputs to ``out/<case>/`` (see the module docstring)."""
    names = settings.class_names
    with timer.stage("read"):
        if data is None:
            choice = IntensityChoice("8bit" if settings.scale_8bit else "auto", spelling="predict")
            data = read_case(case, choice, settings.orientation)
        check_input_kind(settings.trained_on, data.intensity, case.where, model_label,
                         hint=" (or --intensity hu|8bit where the file was read as the wrong kind)")
        lung_values = read_lung_labels(lung_mask, data) if lung_mask is not None else None
    if lung_values is not None and not lung_values.any():
        raise CovsegError(
            f"--lung-mask {lung_mask} holds no lung (every voxel is 0): no share can be measured"
        )
    store = (
        ProbabilityStore(len(data.slices), len(names), data.slices.shape[1:3])
        if options.save_probabilities
        else None
    )
    labels = predict_slices(
        segmenter,
        data.slices,
        data.intensity,
        settings,
        batch_size,
        str(case.path),
        on_batch,
        tta=options.tta,
        on_probabilities=store.add if store is not None else None,
        timer=timer,
    )
    with timer.stage("post-process, measure"):
        labels, steps = postprocess(labels, data, lung_values, options, names)
        lung = lung_values != 0 if lung_values is not None else None
        report = measure_lesions(
            case.name, case.where, model_label, labels, names, data.voxel_ml, data.spacing_mm, lung
        )
        severity = None
        if lung_values is not None and data.reference is not None and data.voxel_ml is not None:
            severity = assess_severity(labels, lung_values, names, data.voxel_ml, data.reference.affine,
                                       data.reoriented.stored is not None, data.reoriented.to_stored)
        report = replace(
            report,
            input_intensity=data.assumed,
            non_finite_as_air=data.replaced,
            orientation=data.orientation,
            tta=describe(options.tta),
            postprocessing=tuple(step.to_dict(names) for step in steps),
            severity=severity.to_dict() if severity is not None else None,
            model_card=options.model_card,
        )
    folder = child_path(out, case.name)
    volume = data.reference is not None
    with timer.stage("write labels"):
        if volume:
            labels_path = _write_volume_labels(labels, data, folder, settings, model_label, label_format)
        else:
            labels_path = folder / "labels.png"
            _write_png_labels(labels[0], labels_path)
    probability_paths: list[Path] = []
    if store is not None:
        with timer.stage("write probabilities"):
            target = data.reoriented.target if data.reoriented is not None else DISPLAY_ORIENTATION
            probability_paths = write_probabilities(store, data.reference, folder, names, target)
    overlay_paths, montage_path = _write_pictures(
        case, data, labels, settings, folder, overlays, options, model_label, timer
    )
    with timer.stage("write report"):
        report_paths = write_report(report, folder)
    return CaseResult(
        report,
        labels_path,
        tuple(overlay_paths),
        report_paths,
        tuple(probability_paths),
        montage_path,
        severity,
    )


def _write_pictures(
    case: Case,
    data: CaseData,
    labels: np.ndarray,
    settings: ModelSettings,
    folder: Path,
    overlays: str,
    options: PredictOptions,
    model_label: str,
    timer: StageTimer = NO_TIMER,
) -> tuple[list[Path], Path | None]:
    """Captioned overlays of the chosen slices and, for a volume with lesions, the montage."""
    volume = data.reference is not None
    shown = _overlay_slices(labels, overlays if volume or overlays == "none" else "all")
    names = settings.class_names
    model_line = f"model: {model_label}" + (f", TTA {options.tta}" if options.tta != "none" else "")
    pictures = {}

    def picture(index: int) -> np.ndarray:
        if index not in pictures:
            image = normalise_channels(data.slices[index], data.intensity, settings.normalisation)
            pictures[index] = overlay(image, labels[index])
        return pictures[index]

    if volume:
        digits = max(3, len(str(len(labels) - 1)))
        overlay_paths = [folder / "overlays" / f"slice_{index:0{digits}d}.png" for index in shown]
        for stale in (folder / "overlays").glob("slice_*.png"):  # from an earlier --overwrite'd run
            if stale not in overlay_paths:
                stale.unlink()
        captions = [
            [f"{case.name}, slice {index} of {len(labels)} (display order, from 0)", model_line]
            for index in shown
        ]
    else:
        overlay_paths = [folder / "overlay.png"] if shown else []
        captions = [[case.name, model_line]] * len(shown)

    def write_overlay(index: int, path: Path, lines: list[str]) -> None:
        save_png(captioned(picture(index), lines, names), path)

    jobs = zip(shown, overlay_paths, captions, strict=True)
    with timer.stage("overlays"):
        in_parallel([partial(write_overlay, index, path, lines) for index, path, lines in jobs])
    montage_path = folder / MONTAGE_FILE
    lesions = lesion_slices(labels) if volume and options.montage else []
    if not lesions:
        if montage_path.exists():  # from an earlier --overwrite'd run
            montage_path.unlink()
        return overlay_paths, None
    chosen = montage_slices(lesions)
    header = [
        f"{case.name}: {len(lesions)} of {len(labels)} slices with lesions"
        + (f", {len(chosen)} shown, evenly spaced" if len(chosen) < len(lesions) else ""),
        model_line,
    ]
    with timer.stage("montage"):
        tiles = [picture(index) for index in chosen]
        save_png(montage(tiles, [f"slice {index}" for index in chosen], header, names), montage_path)
    return overlay_paths, montage_path
