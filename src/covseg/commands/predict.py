"""`covseg predict MODEL INPUT... --out DIR`: label volumes/images, overlays and lesion reports.

The model is an ONNX file, run by :mod:`covseg.inference` without torch; a run folder or checkpoint
is first exported in memory here (:func:`open_model`), the one place where prediction meets
:mod:`covseg.export`. Everything heavy is imported inside the command, so ``covseg --help`` and
``covseg predict --help`` start without onnxruntime, OpenCV or nibabel.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from covseg.commands._common import console, user_errors, warn
from covseg.core.errors import CovsegError
from covseg.terminal import join, styled

if TYPE_CHECKING:
    from covseg.onnx import ExportMetadata, OnnxSegmenter

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".json")
"""Exported in memory first: checkpoints, and an ensemble.json."""


class DeviceChoice(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OverlayChoice(str, Enum):
    lesions = "lesions"
    all = "all"
    none = "none"


@user_errors
def predict(
    model: Annotated[Path, typer.Argument(
        help="An exported .onnx file, or a run folder / .pt checkpoint / cross-validation folder "
        "(exported to ONNX in memory first).",
    )],
    inputs: Annotated[list[Path], typer.Argument(
        help="NIfTI volumes (.nii, .nii.gz), images (PNG, JPG, TIFF) or folders of them."
    )],
    out: Annotated[Path, typer.Option("--out", help="Output folder; each case writes OUT/<case>/.")],
    device: Annotated[DeviceChoice, typer.Option(
        "--device", help="auto (TensorRT, CUDA, else CPU), cpu or cuda."
    )] = DeviceChoice.auto,
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
    scale_8bit: bool = typer.Option(
        False,
        "--scale-8bit",
        help="Inputs hold 8-bit values 0..255 (also NIfTI): divide by 255 instead of a HU window.",
    ),
    lung_mask: Annotated[list[Path] | None, typer.Option(
        "--lung-mask",
        help="Lung mask NIfTI (non-zero = lung) with the geometry of a volume input; "
        "one per volume, in input order (repeatable). Adds the share of lung affected.",
    )] = None,
    overlays: Annotated[OverlayChoice, typer.Option(
        "--overlays",
        help="Overlay PNGs of volume slices: lesions (slices with a lesion), all or none.",
    )] = OverlayChoice.lesions,
) -> None:
    """Segment CT volumes and slices with onnxruntime; write labels, overlays and lesion reports."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from covseg.inference.cases import check_outputs, pair_lung_masks, run_case
    from covseg.inference.inputs import discover_cases, read_case
    from covseg.inference.predict import resolve_settings
    from covseg.onnx import cpu_cores

    cases = discover_cases(inputs)
    check_outputs(cases, out, overwrite)
    lung_masks = pair_lung_masks(cases, lung_mask)
    segmenter, metadata = open_model(model, device.value, log=console.print)
    settings = resolve_settings(segmenter, metadata, classes, window, scale_8bit)
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
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for case in cases:
            data = read_case(case, settings.scale_8bit)
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
            console.print(
                f"{case.name}: {result.labels_path}, {len(result.overlay_paths)} overlay(s), "
                f"{result.report_paths[0].name} and {result.report_paths[1].name}",
                highlight=False,
            )
    console.print(summary)


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


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
