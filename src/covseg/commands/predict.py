"""`covseg predict MODEL INPUT... --out DIR`: label volumes/images, overlays and lesion reports."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from covseg.commands._common import console, user_errors, warn
from covseg.core.errors import CovsegError
from covseg.data.interpret import IntensityChoice
from covseg.inference.cases import check_outputs, pair_lung_masks, run_case
from covseg.inference.inputs import discover_cases, read_case
from covseg.inference.predict import load_segmenter, resolve_settings
from covseg.inference.session import cpu_cores
from covseg.terminal import join, styled


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


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


@user_errors
def predict(
    model: Path = typer.Argument(
        ...,
        help="An exported .onnx file, or a run folder / .pt checkpoint (exported to ONNX in memory first).",
    ),
    inputs: list[Path] = typer.Argument(
        ..., help="NIfTI volumes (.nii, .nii.gz), images (PNG, JPG, TIFF) or folders of them."
    ),
    out: Path = typer.Option(..., "--out", help="Output folder; each case writes OUT/<case>/."),
    device: DeviceChoice = typer.Option(
        DeviceChoice.auto, "--device", help="auto (TensorRT, CUDA, else CPU), cpu or cuda."
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Slices per onnxruntime run."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the outputs of earlier predictions."),
    classes: str | None = typer.Option(
        None,
        "--classes",
        help="Class names, label 0 first (e.g. background,lesion); needed for an ONNX "
        "model without covseg metadata, else overrides it.",
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help="HU window(s) for NIfTI volumes: lung, lung,mediastinal,bone or LEVEL:WIDTH "
        "(e.g. -600:1500); default: the model's own.",
    ),
    intensity: IntensityOption = typer.Option(
        IntensityOption.auto,
        "--intensity",
        help="What input values are: auto (uint8 files are 8-bit, others must look like chest CT in "
        "HU, else refused), hu, or 8bit (grey levels 0..255, divided by 255).",
    ),
    hu_offset: float | None = typer.Option(
        None, "--hu-offset", help="HU = stored value + offset, e.g. -1024 for unsigned CT storage."
    ),
    nan: NanOption = typer.Option(
        NanOption.refuse,
        "--nan",
        help="NaN/infinite voxels: refuse (default) or air (read as -1000 HU; counted in the report).",
    ),
    scale_8bit: bool = typer.Option(False, "--scale-8bit", help="The old spelling of --intensity 8bit."),
    lung_mask: list[Path] = typer.Option(
        [],
        "--lung-mask",
        help="Lung mask NIfTI (non-zero = lung) with the geometry of a volume input; "
        "one per volume, in input order (repeatable). Adds the share of lung affected.",
    ),
    overlays: OverlayChoice = typer.Option(
        OverlayChoice.lesions,
        "--overlays",
        help="Overlay PNGs of volume slices: lesions (slices with a lesion), all or none.",
    ),
) -> None:
    """Segment CT volumes and slices with onnxruntime; write labels, overlays and lesion reports."""
    choice = intensity_choice(intensity.value, hu_offset, nan.value, scale_8bit)
    cases = discover_cases(inputs)
    check_outputs(cases, out, overwrite)
    lung_masks = pair_lung_masks(cases, lung_mask)
    segmenter, metadata = load_segmenter(model, device.value, log=console.print)
    settings = resolve_settings(segmenter, metadata, classes, window, choice.intensity == "8bit")
    threads = f", {cpu_cores()} threads" if not segmenter.on_gpu else ""
    console.print(f"model: {settings.description}", highlight=False)
    if metadata is not None and not metadata.trained:
        warn(f"{model} holds UNTRAINED weights (exported from a model name): its labels mean nothing")
    console.print(join("onnxruntime provider: ", styled(segmenter.provider, "bold"), threads))
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
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for case in cases:
            data = read_case(case, choice)
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
            )
            progress.remove_task(task)
            for measure in result.report.classes:
                summary.add_row(
                    case.name,
                    measure.name,
                    f"{measure.voxels:,}",
                    _number(measure.volume_ml),
                    _number(measure.percent_of_lung),
                )
            console.print(f"{case.name}: read as {data.assumed}", highlight=False)
            console.print(
                f"{case.name}: {result.labels_path}, {len(result.overlay_paths)} overlay(s), "
                f"{result.report_paths[0].name} and {result.report_paths[1].name}",
                highlight=False,
            )
    console.print(summary)


def intensity_choice(intensity: str, hu_offset: float | None, nan: str, scale_8bit: bool) -> IntensityChoice:
    """The predict options as an :class:`IntensityChoice`; ``--scale-8bit`` is ``--intensity 8bit``."""
    if scale_8bit:
        if intensity == "hu":
            raise CovsegError("--scale-8bit (the old spelling of --intensity 8bit) and --intensity hu "
                              "exclude each other")
        intensity = "8bit"
    return IntensityChoice(intensity, hu_offset, nan, spelling="predict")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
