"""`covseg predict MODEL INPUT... --out DIR`: label volumes/images, overlays and lesion reports.

The model is an ONNX file, run by :mod:`covseg.inference` without torch; a run folder or checkpoint
is first exported in memory here (:func:`open_model`), the one place where prediction meets
:mod:`covseg.export`. Everything heavy is imported inside the command, so ``covseg --help`` and
``covseg predict --help`` start without onnxruntime, OpenCV or nibabel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from covseg.commands._common import (
    argument,
    console,
    error_line,
    fail,
    option,
    user_errors,
    warn,
    warn_mixed_onnxruntime,
)
from covseg.core.errors import CovsegError
from covseg.terminal import join, styled

if TYPE_CHECKING:
    from covseg.data.interpret import IntensityChoice
    from covseg.onnx import ExportMetadata, OnnxSegmenter
    from covseg.terminal import Table

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".json")
"""Exported in memory first: checkpoints, and an ensemble.json."""


class IntensityOption(str, Enum):
    auto = "auto"
    hu = "hu"
    eight_bit = "8bit"


class NanOption(str, Enum):
    refuse = "refuse"
    air = "air"


class OverlayChoice(str, Enum):
    lesions = "lesions"
    all = "all"
    none = "none"


class LabelFormat(str, Enum):
    nifti = "nifti"
    dicom_seg = "dicom-seg"


class TtaChoice(str, Enum):
    none = "none"
    flips = "flips"


@user_errors
def predict(
    model: Annotated[Path, argument(
        "MODEL", help="An exported .onnx file, or a run folder / .pt checkpoint / cross-validation folder "
        "(exported to ONNX in memory first).",
    )],
    inputs: Annotated[list[Path], argument(
        "INPUTS", help="NIfTI volumes (.nii, .nii.gz), images (PNG, JPG, TIFF), or folders of them or of "
        "DICOM series (needs covseg[dicom])."
    )],
    out: Annotated[Path, option("--out", metavar="DIR", help="Output folder; each case writes OUT/<case>/.")],
    device: Annotated[str, option(
        "--device", metavar="DEVICE", default_text="auto",
        help="auto (TensorRT, CUDA, else CPU), cpu, cuda or cuda:N."
    )] = "auto",
    batch_size: Annotated[int, option(
        "--batch-size", metavar="INTEGER", min=1, max=4096, default_text="8",
        help="Slices per onnxruntime run."
    )] = 8,
    overwrite: Annotated[bool, option(
        "--overwrite", help="Replace the outputs of earlier predictions."
    )] = False,
    classes: Annotated[str | None, option(
        "--classes", metavar="NAMES",
        help="Class names, label 0 first (e.g. background,lesion); needed for an ONNX "
        "model without covseg metadata, else overrides it.",
    )] = None,
    window: Annotated[str | None, option(
        "--window", metavar="WINDOWS",
        help="HU window(s) for NIfTI volumes: lung, lung,mediastinal,bone or LEVEL:WIDTH "
        "(e.g. -600:1500).", default_text="the model's own",
    )] = None,
    intensity: Annotated[IntensityOption, option(
        "--intensity", metavar="NAME", default_text=IntensityOption.auto.value,
        help="What input values are: auto (uint8 files are 8-bit, others must look like chest CT in "
        "HU, else refused), hu, or 8bit (grey levels 0..255, divided by 255).",
    )] = IntensityOption.auto,
    hu_offset: Annotated[float | None, option(
        "--hu-offset", metavar="NUMBER",
        help="HU = stored value + offset, e.g. -1024 for unsigned CT storage."
    )] = None,
    nan: Annotated[NanOption, option(
        "--nan", metavar="NAME", default_text=NanOption.refuse.value,
        help="NaN/infinite voxels: refuse or air (read as -1000 HU; counted in the report).",
    )] = NanOption.refuse,
    scale_8bit: Annotated[bool, option(
        "--scale-8bit", help="The old spelling of --intensity 8bit."
    )] = False,
    lung_mask: Annotated[list[Path] | None, option(
        "--lung-mask", metavar="FILE",
        help="Lung mask NIfTI (non-zero = lung) with the geometry of a volume input; "
        "one per volume, in input order (repeatable). Adds the share of lung affected.",
    )] = None,
    overlays: Annotated[OverlayChoice, option(
        "--overlays", metavar="NAME", default_text=OverlayChoice.lesions.value,
        help="Overlay PNGs of volume slices: lesions (slices with a lesion), all or none.",
    )] = OverlayChoice.lesions,
    series: Annotated[list[str] | None, option(
        "--series", metavar="SERIES",
        help="DICOM series to predict in a folder holding several: SeriesNumber or SeriesInstanceUID "
        "(repeatable), or all.",
    )] = None,
    label_format: Annotated[LabelFormat, option(
        "--format", metavar="NAME", default_text=LabelFormat.nifti.value,
        help="Labels as nifti (labels.nii.gz; images: labels.png) or dicom-seg (a DICOM SEG over the "
        "source series, for DICOM inputs; needs covseg[dicom]).",
    )] = LabelFormat.nifti,
    tta: Annotated[TtaChoice, option(
        "--tta", metavar="NAME", default_text=TtaChoice.none.value,
        help="Test-time augmentation: none, or flips (softmax averaged over the slice and its "
        "left-right, top-bottom and both mirror images: 4 passes, nnU-Net's mirroring).",
    )] = TtaChoice.none,
    save_probabilities: Annotated[bool, option(
        "--save-probabilities",
        help="Also write the class probabilities at the native size: probabilities/<label>_<class>.nii.gz "
        "(uint16, scl_slope 1/65535) for volumes, probabilities.npy (float16) for images.",
    )] = False,
    restrict_to_lung: Annotated[bool, option(
        "--restrict-to-lung",
        help="Remove ground-glass and consolidation outside the --lung-mask (pleural effusion, "
        "outside the lung by definition, is kept); the report lists what was removed.",
    )] = False,
    min_lesion_ml: Annotated[float | None, option(
        "--min-lesion-ml", metavar="NUMBER",
        help="Remove lesions (26-connected components of any lesion class) smaller than this many ml; "
        "volumes only. The report lists what was removed.",
    )] = None,
    montage: Annotated[bool, option(
        "--montage/--no-montage", default_text="on", help="A montage.png of the lesion slices of each volume."
    )] = True,
) -> None:
    """Segment CT volumes and slices with onnxruntime; write labels, overlays and lesion reports."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from covseg.files import write_text
    from covseg.inference.cases import (
        PredictOptions,
        check_label_format,
        check_outputs,
        pair_lung_masks,
        run_case,
    )
    from covseg.inference.inputs import discover_cases, read_case
    from covseg.inference.predict import parse_classes, resolve_settings
    from covseg.inference.report import SUMMARY_CSV, summary_csv
    from covseg.onnx import cpu_cores
    from covseg.onnx.card import applicable_card
    from covseg.onnx.session import choose_providers
    from covseg.terminal import Table
    from covseg.tta import describe

    # What needs no model is checked before a run is exported to ONNX (seconds) or any input is read.
    choose_providers(device)  # the syntax, and that the GPU asked for is there
    if classes is not None:
        parse_classes(classes)
    warn_mixed_onnxruntime()
    choice = intensity_choice(intensity.value, hu_offset, nan.value, scale_8bit)
    cases = discover_cases(inputs, series or ())
    check_outputs(cases, out, overwrite)
    lung_masks = pair_lung_masks(cases, lung_mask)
    options = PredictOptions(tta.value, save_probabilities, restrict_to_lung, min_lesion_ml, montage)
    options.check(cases, lung_masks)
    segmenter, metadata = open_model(model, device, log=console.print)
    settings = resolve_settings(segmenter, metadata, classes, window, choice.intensity == "8bit")
    check_label_format(cases, label_format.value, settings.class_names)
    threads = f", {cpu_cores()} threads" if not segmenter.on_gpu else ""
    console.print(f"model: {settings.description}", highlight=False)
    if metadata is not None and not metadata.trained:
        warn(f"{model} holds UNTRAINED weights (exported from a model name): its labels mean nothing")
    onnx_file = model.is_file() and model.suffix.lower() not in CHECKPOINT_SUFFIXES
    card = applicable_card(model if onnx_file else None, segmenter.metadata_props, segmenter.origin)
    console.print(card.line, highlight=False)
    if card.warning:
        warn(card.warning)
    options = replace(options, model_card=card.line.removeprefix("model card: "))
    console.print(join("onnxruntime provider: ", styled(segmenter.provider, "bold"), threads))
    if options.tta != "none":
        console.print(f"test-time augmentation: {describe(options.tta)}", highlight=False)
    summary = Table(title=f"lesions per case (written to {out})")
    for column, justify in (
        ("case", "left"),
        ("class", "left"),
        ("voxels", "right"),
        ("volume (ml)", "right"),
        ("% of lung", "right"),
    ):
        summary.add_column(column, justify=justify)
    model_label = metadata.model_name if metadata is not None else str(model)
    reports = []
    severities = []
    failed: list[str] = []
    volumes: set[bool] = set()  # whether each reported case is a volume (voxels) or an image (pixels)
    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for case in cases:
            task = None
            try:
                data = read_case(case, choice, settings.orientation)
                task = progress.add_task(case.name, total=len(data.slices))
                result = run_case(
                    case,
                    segmenter,
                    settings,
                    out,
                    model_label=model_label,
                    batch_size=batch_size,
                    lung_mask=lung_masks.get(case.name),
                    overlays=overlays.value,
                    data=data,
                    on_batch=lambda count, task=task: progress.advance(task, count),
                    options=options,
                    label_format=label_format.value,
                )
            except CovsegError as error:
                if len(cases) == 1:
                    raise
                # One bad input must not cost the others: say so, go on, list it at the end.
                if task is not None:
                    progress.remove_task(task)
                error_line(f"{case.name}: {error}")
                failed.append(case.name)
                continue
            progress.remove_task(task)
            reports.append(result.report)
            volumes.add(case.is_volume)
            if result.severity is not None:
                severities.append((case.name, result.severity))
            for measure in result.report.classes:
                summary.add_row(
                    case.name,
                    measure.name,
                    f"{measure.voxels:,}",
                    _number(measure.volume_ml),
                    _number(measure.percent_of_lung),
                )
            console.print(f"{case.name}: read as {data.assumed}", highlight=False)
            if data.orientation:
                console.print(f"{case.name}: {data.orientation}", highlight=False)
            for step in result.report.postprocessing:
                removed = sum(item["voxels"] for item in step["removed"].values())
                console.print(f"{case.name}: {step['setting']}: {removed:,} voxel(s)", highlight=False)
            extras = [f"{len(result.overlay_paths)} overlay(s)"]
            if result.montage_path is not None:
                extras.append(result.montage_path.name)
            if result.probability_paths:
                extras.append(f"{len(result.probability_paths)} probability file(s)")
            console.print(
                f"{case.name}: {result.labels_path}, {', '.join(extras)}, "
                f"{result.report_paths[0].name} and {result.report_paths[1].name}",
                highlight=False,
            )
    if reports:
        summary_path = write_text(out / SUMMARY_CSV, summary_csv(reports))
        summary.columns[2].header = count_column(volumes)
        console.print(summary)
        if severities:
            console.print(severity_table(severities))
        console.print(f"one row per case: {summary_path}", highlight=False)
    if failed:
        raise fail(f"{len(failed)} of {len(cases)} cases failed (listed above)")


def open_model(
    model: Path,
    device: str = "auto",
    exporter: str = "torchscript",
    log: Callable[[str], None] | None = None,
) -> tuple[OnnxSegmenter, ExportMetadata | None]:
    """An ONNX file, or a run folder / checkpoint exported to ONNX in memory (verified) first.

    Returns the onnxruntime session and the covseg metadata the model carries (None for an ONNX
    model from elsewhere). Raises :class:`CovsegError` for a path that does not exist, a file
    onnxruntime cannot run, or an export that fails its checks.
    """
    from covseg.onnx import OnnxSegmenter

    path = Path(model)
    if path.is_dir() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        from covseg.export import export_model, load_export_source

        result = export_model(load_export_source(path), exporter=exporter)
        if log is not None:
            worst = max(check.max_abs_diff for check in result.checks)
            log(
                f"exported {path} to ONNX in memory ({result.exporter} exporter, "
                f"{result.export_seconds:.1f} s, max |logit difference| vs PyTorch {worst:.2g})"
            )
        segmenter = OnnxSegmenter(result.model_bytes, device=device, origin=f"the export of {path}")
    elif path.is_file():
        segmenter = OnnxSegmenter(path, device=device)
    else:
        raise CovsegError(f"{path} does not exist; give an .onnx file, a run folder or a .pt checkpoint")
    return segmenter, segmenter.covseg_metadata


def intensity_choice(intensity: str, hu_offset: float | None, nan: str, scale_8bit: bool) -> IntensityChoice:
    """The predict options as an :class:`IntensityChoice`; ``--scale-8bit`` is ``--intensity 8bit``."""
    from covseg.data.interpret import IntensityChoice

    if scale_8bit:
        if intensity == "hu":
            raise CovsegError("--scale-8bit (the old spelling of --intensity 8bit) and --intensity hu "
                              "exclude each other")
        intensity = "8bit"
    return IntensityChoice(intensity, hu_offset, nan, spelling="predict")


def count_column(volumes: set[bool]) -> str:
    """The shown table's count header: ``voxels`` for volumes, ``pixels`` for 2-D images, both when
    the cases mix. (report.csv/json and summary.csv keep the one field name ``voxels`` for both.)"""
    if volumes == {False}:
        return "pixels"
    return "voxels" if volumes == {True} else "voxels (pixels for images)"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def severity_table(severities: list) -> Table:
    """Per case: share of each lung involved, its band, and the score (covseg.inference.severity)."""
    from covseg.terminal import Table

    table = Table(title="lung involvement (ground-glass + consolidation in the lung mask) and severity",
                  caption="bands and score: lobe-free adaptation of Chung et al., Radiology 2020 "
                  "(0-4 per lung, 0-8 in all); see report.json")
    for column, justify in (("case", "left"), ("lungs %", "right"), ("left %", "right"),
                            ("right %", "right"), ("bands L/R", "right"), ("score", "right"),
                            ("sides from", "left")):
        table.add_column(column, justify=justify)
    for name, severity in severities:
        lungs, left, right = (severity.lung(side) for side in ("lungs", "left", "right"))
        bands = f"{left.band}/{right.band}" if left and right else "—"
        table.add_row(name, _number(lungs.percent), _number(left.percent if left else None),
                      _number(right.percent if right else None), bands,
                      "—" if severity.score is None else f"{severity.score}/{severity.max_score}",
                      severity.sides)
    return table
