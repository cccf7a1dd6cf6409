"""``covseg predict`` on a whole CT volume, end to end, stage by stage, against PyTorch eager.

A 512x512xN int16 NIfTI (gzip; the embedded phantom's chest slices in HU, 0.7 x 0.7 x 2.5 mm; the
first 20 slices repeated) goes through :func:`covseg.inference.run_case`, exactly what
``covseg predict`` runs per case: read, normalise and resize to the model's size, inference,
softmax and the resize back, post-processing and measuring, writing the label volume, the overlays
and the montage, the report. The model is unet at a trained size of 128 (untrained, batch-norm
statistics calibrated on random inputs, so its output varies like a trained model's); it is run
twice in the same process: through onnxruntime (``covseg predict``) and through PyTorch eager with
every other stage the same (a stand-in for the session that calls the torch model), so the ratio of
slices/s compares the runtimes inside the whole pipeline. Stage times come from
:class:`covseg.inference.timing.StageTimer`.

    python benchmarks/volume_speed.py                       # 100 slices, batch 8, 1 thread
    python benchmarks/volume_speed.py --slices 40 --threads 2 --tta flips --markdown
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

import cv2
import nibabel as nib
import numpy as np
import onnxruntime
import torch
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from _markdown import print_markdown  # benchmarks/_markdown.py (scripts run from this folder)
from rich.table import Table

from covseg.benchmark.hardware import cpu_name
from covseg.commands._common import option
from covseg.core.registry import create_model
from covseg.data.loading import load_slices
from covseg.export.onnx_export import export_model, load_export_source
from covseg.inference.cases import PredictOptions, run_case
from covseg.inference.inputs import Case
from covseg.inference.predict import resolve_settings
from covseg.inference.timing import StageTimer
from covseg.onnx import OnnxSegmenter
from covseg.onnx.session import TensorSpec
from covseg.terminal import SafeConsole

console = SafeConsole(width=140)
SIDE = 512
TRAINED_SIZE = 128
DISTINCT_SLICES = 20
ZOOMS = (0.7, 0.7, 2.5)


def write_volume(path: Path, slices: int) -> None:
    """The phantom's first :data:`DISTINCT_SLICES` chest slices (HU), repeated to ``slices``."""
    phantom = load_slices("phantom", None, {"count": str(min(slices, DISTINCT_SLICES)), "size": str(SIDE)})
    display = np.stack([phantom.images[index % len(phantom.images)] for index in range(slices)])
    raw = np.clip(np.rint(display), -1024, 3071).astype(np.int16).transpose(2, 1, 0)
    image = nib.Nifti1Image(raw, np.diag([-ZOOMS[0], ZOOMS[1], ZOOMS[2], 1.0]))
    image.header.set_zooms(ZOOMS)
    nib.save(image, path)


def calibrated_unet() -> torch.nn.Module:
    """unet with running batch-norm statistics from random 128x128 inputs, in eval mode."""
    model = create_model("unet")
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(2, 3, TRAINED_SIZE, TRAINED_SIZE, generator=generator))
    return model.eval()


@dataclass
class TorchSegmenter:
    """What :func:`covseg.inference.predict.predict_slices` needs of a session, run by PyTorch eager."""

    model: torch.nn.Module
    input: TensorSpec
    output: TensorSpec
    origin: str = "PyTorch eager"
    on_gpu: bool = False

    def logits(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()


def machine() -> str:
    cpu = cpu_name()
    return (
        f"{cpu}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, opencv {cv2.__version__}"
    )


def main(
    slices: Annotated[int, option("--slices", metavar="INTEGER", min=1, default_text="100",
                                  help="Slices of the 512x512 volume.")] = 100,
    batch: Annotated[int, option("--batch", metavar="INTEGER", min=1, default_text="8",
                                 help="Slices per inference run (--batch-size).")] = 8,
    threads: Annotated[int, option("--threads", metavar="INTEGER", min=1, default_text="1",
                                   help="Threads for onnxruntime, torch and OpenCV.")] = 1,
    tta: Annotated[str, option("--tta", metavar="NAME", default_text="none", help="none or flips.")] = "none",
    overlays: Annotated[str, option("--overlays", metavar="NAME", default_text="lesions",
                                    help="lesions, all or none.")] = "lesions",
    markdown: Annotated[bool, option("--markdown", help="Also print the table as Markdown.")] = False,
) -> None:
    """Time covseg predict's stages on one volume, with onnxruntime and with PyTorch eager."""
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    console.print(f"machine: {machine()}; {threads} thread(s)", highlight=False)
    source = load_export_source("unet")
    source.model = calibrated_unet()
    source.metadata = replace(source.metadata, image_size=TRAINED_SIZE)
    result = export_model(source, trace_size=TRAINED_SIZE)
    onnx_segmenter = OnnxSegmenter(result.model_bytes, device="cpu", threads=threads, origin="unet-128")
    torch_segmenter = TorchSegmenter(source.model, onnx_segmenter.input, onnx_segmenter.output)
    settings = resolve_settings(onnx_segmenter, result.metadata)
    options = PredictOptions(tta=tta)
    runs: dict[str, tuple[StageTimer, float, int]] = {}
    with tempfile.TemporaryDirectory(prefix="covseg-volume-speed-") as folder:
        volume = Path(folder) / "chest.nii.gz"
        write_volume(volume, slices)
        case = Case("chest", volume, "volume")
        for name, segmenter in (
            ("warm-up", onnx_segmenter),
            ("onnxruntime", onnx_segmenter),
            ("PyTorch eager", torch_segmenter),
        ):
            timer = StageTimer()
            start = time.perf_counter()
            outcome = run_case(
                case,
                segmenter,
                settings,
                Path(folder) / name.replace(" ", "-"),
                model_label="unet-128",
                batch_size=batch,
                overlays=overlays,
                options=options,
                timer=timer,
            )
            runs[name] = (timer, time.perf_counter() - start, len(outcome.overlay_paths))
    runs.pop("warm-up")
    stages = list(dict.fromkeys(stage for timer, _, _ in runs.values() for stage in timer.seconds))
    table = Table(
        title=f"covseg predict on a 512x512x{slices} volume, unet trained at {TRAINED_SIZE}, "
        f"batch {batch}, TTA {tta}, {threads} thread(s)"
    )
    columns = ["stage"]
    for name in runs:
        columns += [f"{name} s", f"{name} %"]
    for column in columns:
        table.add_column(column, justify="left" if column == "stage" else "right")
    rows = []
    for stage in [*stages, "other", "total"]:
        row = [stage]
        for timer, total, _ in runs.values():
            seconds = (
                total
                if stage == "total"
                else total - sum(timer.seconds.values())
                if stage == "other"
                else timer.seconds.get(stage, 0.0)
            )
            row += [f"{seconds:.2f}", f"{100 * seconds / total:.1f}"]
        rows.append(row)
        table.add_row(*row)
    rates = {name: slices / total for name, (_, total, _) in runs.items()}
    rate_row = ["slices/s"]
    for name in runs:
        rate_row += [f"{rates[name]:.2f}", ""]
    rows.append(rate_row)
    table.add_row(*rate_row)
    console.print(table)
    overlays_written = next(iter(runs.values()))[2]
    ratio = rates["onnxruntime"] / rates["PyTorch eager"]
    console.print(
        f"onnxruntime / PyTorch eager, end to end: {ratio:.2f}x; {overlays_written} overlay(s) "
        "written per run",
        highlight=False,
    )
    if markdown:
        print_markdown(columns, rows)


if __name__ == "__main__":
    run_script(typer_app(main))
