"""`covseg export MODEL|RUN|CHECKPOINT [--out FILE.onnx|FOLDER]`: a checked ONNX file with metadata."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

from covseg.commands._common import argument, console, option, user_errors, warn, warn_mixed_onnxruntime
from covseg.core.errors import CovsegError
from covseg.export.settings import DEFAULT_OPSET, DEFAULT_TOLERANCE, check_export_options
from covseg.files import check_creatable


class ExporterChoice(str, Enum):
    torchscript = "torchscript"
    dynamo = "dynamo"


@user_errors
def export(
    target: Annotated[str, argument(
        "TARGET", help="A run folder (its best.pt), a .pt checkpoint, a cross-validation folder or its "
        "ensemble.json (one graph: the log of the fold models' mean softmax), or a model name "
        "(untrained weights, for trying the pipeline).")],
    onnx: Annotated[bool | None, option(
        "--onnx/--no-onnx", hidden=True,
        help="Deprecated: ONNX is the one export format, always on.")] = None,
    # Text, not Path: a Path drops the trailing separator that marks NAME.onnx/ as a folder.
    out: Annotated[str | None, option(
        "--out", metavar="PATH", default_text="the folder exports",
        help="A folder (its file is named <model>.onnx, or <model>-<run>.onnx for a run; a name ending "
        "in / is always a folder) or a file name ending in .onnx.")] = None,
    opset: Annotated[int, option(
        "--opset", metavar="INTEGER", min=13, default_text=str(DEFAULT_OPSET),
        help="ONNX opset version.")] = DEFAULT_OPSET,
    image_size: Annotated[int | None, option(
        "--image-size", metavar="INTEGER", default_text="the trained image size, else 64",
        help="Square side to trace and check at (a second, odd size is checked too).")] = None,
    exporter: Annotated[ExporterChoice, option(
        "--exporter", metavar="NAME", default_text=ExporterChoice.torchscript.value,
        help="torchscript (fast) or dynamo (torch.export).")] = ExporterChoice.torchscript,
    tolerance: Annotated[float, option(
        "--tolerance", metavar="NUMBER", default_text=f"{DEFAULT_TOLERANCE:g}",
        help="Largest allowed |logit| difference onnxruntime vs PyTorch (times the largest |logit| "
        "when > 1).")] = DEFAULT_TOLERANCE,
    overwrite: Annotated[bool, option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Export a trained model to ONNX (dynamic batch, height, width), verified against PyTorch."""
    from covseg.export.onnx_export import (
        check_output_path,
        export_model,
        export_path,
        load_export_source,
        write_export,
    )
    from covseg.terminal import Table

    if onnx is False:
        raise CovsegError("--no-onnx leaves nothing to export: ONNX is the one export format")
    if onnx:
        warn("--onnx is deprecated and does nothing (ONNX is the one export format); drop it")
    check_export_options(image_size, tolerance)
    warn_mixed_onnxruntime()
    source = load_export_source(target)
    path = export_path(out, source)
    check_output_path(path, overwrite)
    # A read-only folder or full disk is found before the export, not after; nothing is created yet.
    check_creatable(path.parent, f"--out {out if out is not None else path.parent}")
    if not source.metadata.trained:
        warn(f"{target} is a model name: exporting an UNTRAINED {target} (random weights); "
             "give a run folder or checkpoint for a trained model")
    console.print(f"exporting {source.metadata.describe()}", highlight=False)
    result = export_model(source, image_size, opset, exporter.value, tolerance)
    card = write_export(result, path, overwrite)
    table = Table(title=f"onnxruntime (CPU) vs PyTorch, random inputs (tolerance {tolerance:g})")
    for column in ("input (N, C, H, W)", "max |logit diff|", "largest |logit|", "allowed", "ok"):
        table.add_column(column, justify="right")
    for check in result.checks:
        table.add_row(
            "x".join(map(str, check.shape)),
            f"{check.max_abs_diff:.3g}",
            f"{check.logit_scale:.3g}",
            f"{check.allowed:.3g}",
            "yes" if check.passed else "no",
        )
    console.print(table)
    size_mb = len(result.model_bytes) / 1e6
    console.print(
        f"wrote {path} ({size_mb:.1f} MB, opset {opset}, {exporter.value} exporter, "
        f"{result.export_seconds:.1f} s; dynamic batch, height and width)",
        highlight=False,
    )
    console.print(f"wrote its model card {card} (also in the file's metadata, covseg.model_card)",
                  highlight=False)
