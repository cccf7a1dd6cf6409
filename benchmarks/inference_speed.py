"""Inference speed: onnxruntime vs PyTorch eager, same model, same inputs, same run.

For each model: an untrained network with batch-norm statistics calibrated on random inputs (so
logits have the magnitude of a trained model's), exported with ``covseg export``'s code path
(checked), then timed host-to-host (input from a NumPy array, logits back in host memory) in both
runtimes with the same number of threads. The table gives images/s, p50/p95 latency per batch, the
ratio onnxruntime/PyTorch (> 1: onnxruntime faster) and the largest |logit| difference on the
benchmark input beside the float32 noise floor (PyTorch fp32 vs the same network in float64):
deep untrained ResNets are ill-conditioned, and there onnxruntime's logits are no further from the
float64 result than PyTorch's own.

    python benchmarks/inference_speed.py --size 64 --models unet,deeplabv3-resnet101
    python benchmarks/inference_speed.py --device cuda --size 512 --batch 8   # on a GPU machine
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable
from typing import Annotated

import numpy as np
import onnxruntime
import torch
import typer
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from _markdown import print_markdown  # benchmarks/_markdown.py (scripts run from this folder)
from rich.table import Table

from covseg.benchmark.hardware import cpu_name
from covseg.commands._common import option
from covseg.core.registry import create_model
from covseg.export.onnx_export import export_model, load_export_source
from covseg.onnx import OnnxSegmenter, cpu_cores
from covseg.terminal import SafeConsole

console = SafeConsole(width=160)  # the table is wide; keep it whole when piped to a file
DEFAULT_MODELS = (
    "unet,deeplabv3plus-resnet101,deeplabv3plus-xception,fcn-resnet50,fcn-resnet101,"
    "deeplabv3-resnet50,deeplabv3-resnet101"
)


def calibrate_batch_norm(model: torch.nn.Module, size: int, batches: int = 3) -> torch.nn.Module:
    """Running statistics from random inputs in [0, 1] (cumulative average), then eval mode."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand(2, 3, size, size, generator=generator))
    return model.eval()


def time_interleaved(runs: list[Callable[[], object]], warmup: int, iters: int) -> list[list[float]]:
    """Seconds per call of each run, after ``warmup`` untimed calls of each.

    The runs alternate call by call, so background load on a shared machine hits both alike.
    """
    for _ in range(warmup):
        for run in runs:
            run()
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(iters):
        for run, record in zip(runs, times, strict=True):
            start = time.perf_counter()
            run()
            record.append(time.perf_counter() - start)
    return times


def summary(times: list[float], batch: int) -> tuple[float, float, float]:
    """(images/s, p50 ms, p95 ms) of per-batch times."""
    p95 = statistics.quantiles(times, n=20)[-1] if len(times) >= 2 else times[0]
    return batch * len(times) / sum(times), 1000 * statistics.median(times), 1000 * p95


def machine(device: torch.device) -> str:
    cpu = cpu_name()
    gpu = f", GPU {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"{cpu}, {cpu_cores()} cores{gpu}; torch {torch.__version__}, onnxruntime {onnxruntime.__version__}"
    )


def main(
    models: Annotated[str, option("--models", metavar="NAMES", default_text=DEFAULT_MODELS,
                                  help="Comma-separated model names.")] = DEFAULT_MODELS,
    size: Annotated[int, option("--size", metavar="INTEGER", default_text="512",
                                help="Square input side in pixels.")] = 512,
    batch: Annotated[int, option("--batch", metavar="INTEGER", default_text="1", help="Images per run.")] = 1,
    iters: Annotated[int, option("--iters", metavar="INTEGER", default_text="20",
                                 help="Timed runs per runtime and model.")] = 20,
    warmup: Annotated[int, option("--warmup", metavar="INTEGER", default_text="3",
                                  help="Untimed runs first.")] = 3,
    device: Annotated[str, option("--device", metavar="DEVICE", default_text="auto",
                                  help="auto (CUDA when present), cpu or cuda.")] = "auto",
    threads: Annotated[int, option("--threads", metavar="INTEGER", default_text="0",
                                   help="CPU threads for both runtimes (0: one per core).")] = 0,
    markdown: Annotated[bool, option("--markdown", help="Also print the table as Markdown.")] = False,
) -> None:
    """Time onnxruntime against PyTorch eager for each model and print the ratio table."""
    if batch < 1 or iters < 2 or size < 32:
        raise typer.BadParameter("--batch >= 1, --iters >= 2 and --size >= 32")
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    torch_device = torch.device("cuda" if cuda else "cpu")
    threads = threads or cpu_cores()
    torch.set_num_threads(threads)
    console.print(f"machine: {machine(torch_device)}", highlight=False)
    table = Table(
        title=f"inference, {batch}x3x{size}x{size} fp32, host to host, {threads} CPU thread(s), "
        f"{iters} runs after {warmup}"
    )
    columns = (
        "model",
        "runtime",
        "torch img/s",
        "ort img/s",
        "ort/torch",
        "torch p50/p95 ms",
        "ort p50/p95 ms",
        "max abs Δlogit",
        "fp32 noise",
        "max abs logit",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "runtime") else "right")
    rows = []
    inputs = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    for name in (part.strip() for part in models.split(",") if part.strip()):
        source = load_export_source(name)
        source.model = calibrate_batch_norm(create_model(name), min(size, 128))
        result = export_model(source, trace_size=64)
        segmenter = OnnxSegmenter(result.model_bytes, device="cuda" if cuda else "cpu", threads=threads)
        model = source.model.to(torch_device)

        def torch_run(model=model) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(inputs).to(torch_device)).float().cpu().numpy()

        torch_times, ort_times = time_interleaved(
            [torch_run, lambda segmenter=segmenter: segmenter.logits(inputs)], warmup, iters
        )
        expected, actual = torch_run(), segmenter.logits(inputs)
        # The float32 noise floor: PyTorch fp32 against the same network in float64 on the CPU.
        with torch.inference_mode():
            exact = copy.deepcopy(model).cpu().double()(torch.from_numpy(inputs).double()).numpy()
        torch_rate, torch_p50, torch_p95 = summary(torch_times, batch)
        ort_rate, ort_p50, ort_p95 = summary(ort_times, batch)
        row = (
            name,
            f"{torch_device.type} / {segmenter.provider.replace('ExecutionProvider', '')}",
            f"{torch_rate:.1f}",
            f"{ort_rate:.1f}",
            f"{ort_rate / torch_rate:.2f}x",
            f"{torch_p50:.1f} / {torch_p95:.1f}",
            f"{ort_p50:.1f} / {ort_p95:.1f}",
            f"{np.abs(actual - expected).max():.2e}",
            f"{np.abs(expected - exact).max():.2e}",
            f"{np.abs(expected).max():.2f}",
        )
        rows.append(row)
        table.add_row(*row)
        del model, segmenter
    console.print(table)
    if markdown:
        print_markdown(columns, rows)


if __name__ == "__main__":
    run_script(typer_app(main))
