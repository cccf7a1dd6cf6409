"""Training throughput: a plain reference-style loop against covseg's training step, same run.

For each model, on the same device and in the same process:

(a) reference: the study's loop as usually written: float32, eager, Adam, cross-entropy, batch 8,
    PyTorch's defaults (no cuDNN autotuning), on tensors already on the device (the model step
    only: no data pipeline at all);
(b) covseg: covseg's own step (:func:`covseg.training.loop.train_one_epoch`: bf16 autocast and
    channels-last by default on CUDA, float32 on the CPU, cuDNN autotuning, optional
    torch.compile), fed through the real data pipeline: slices in a SliceDataset with the
    reference augmentation, DataLoader workers, pinned memory, asynchronous copies.

It prints images/s of both and the ratio b/a, in a table titled with the device (the GPU's name,
or the CPU's). The target b/a >= 2 is for an H100/H200 (bf16 tensor cores); a CPU has no bf16 gain
in this comparison, so there b/a stays near 1.

    python benchmarks/train_speed.py                                  # every model, 512x512, GPU
    python benchmarks/train_speed.py --data ../shared/data/medseg100 --json speed.json --markdown speed.md
    python benchmarks/train_speed.py --models unet,fcn-resnet50 --size 64 --steps 6 --device cpu

``--budget-s`` skips the models that would not finish in time (estimated from the slowest model
so far) and says so; a model that fails (out of memory, say) is reported with its error and the
others go on.
"""

from __future__ import annotations

import gc
import itertools
import platform
import time
from pathlib import Path
from typing import Annotated, Any

import torch
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from rich.table import Table

from covseg.commands._common import option
from covseg.core.entries import CTSlices
from covseg.core.registry import create_model, get_registry
from covseg.data.loading import load_slices
from covseg.devices import resolve_device
from covseg.files import one_line, write_json, write_text
from covseg.terminal import SafeConsole
from covseg.training.config import TrainConfig
from covseg.training.distributed import DistributedContext
from covseg.training.loaders import TrainingData, build_training_data, choose_split
from covseg.training.loop import StepSettings, train_one_epoch
from covseg.training.losses import build_loss
from covseg.training.optim import build_optimizer

console = SafeConsole()
BATCH = 8
TARGET_RATIO = 2.0
"""b/a that covseg's step should reach on an H100-class GPU (bf16 tensor cores)."""
PHANTOM_SLICES = 40
"""Phantom slices generated once per benchmark run (without --data); the loader cycles over them."""
COLUMNS = ("model", "a: reference fp32 eager (img/s)", "b: covseg (img/s)", "b settings", "b/a")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(name: str, device: torch.device, size: int, steps: int, warmup: int) -> float:
    """Images/s of the plain loop: fp32, eager, Adam lr 1e-5, cross-entropy, batch 8, no autotuning."""
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    model = create_model(name).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    images = torch.rand(BATCH, 3, size, size, device=device)
    masks = torch.randint(0, 4, (BATCH, size, size), device=device)

    def step() -> None:
        optimizer.zero_grad()
        loss = loss_fn(model(images), masks)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return steps * BATCH / (time.perf_counter() - start)


def endless_batches(data: TrainingData):
    """The training loader epoch after epoch (new shuffle and augmentation each time)."""
    for epoch in itertools.count():
        data.set_epoch(epoch)
        yield from data.train_loader


def covseg_loop(name: str, slices: CTSlices, settings: StepSettings, size: int, steps: int, warmup: int,
                workers: int, compile_model: bool) -> float:
    """Images/s of covseg's step (``settings``) over the real, augmented data pipeline."""
    device = settings.device
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as covseg train sets it
    config = TrainConfig.from_recipe(name, batch_size=BATCH, image_size=size, workers=workers,
                                     recalibrate_bn=False, val_fraction=0.1)
    config = config.for_intensity(slices.intensity, slices.source)  # 8-bit slices: /255, not a HU window
    context = DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    data = build_training_data(config, slices, choose_split(config, slices), context)
    torch.manual_seed(0)
    model = settings.prepare_model(create_model(name))
    optimizer = build_optimizer(config.optimizer, model, config.lr, config.weight_decay)
    loss_fn = build_loss(config.loss, config.num_classes).to(device)
    step_model = torch.compile(model) if compile_model else model
    batches = endless_batches(data)
    train_one_epoch(step_model, itertools.islice(batches, warmup), optimizer, loss_fn, settings)
    result = train_one_epoch(step_model, itertools.islice(batches, steps), optimizer, loss_fn, settings)
    return result.images / result.seconds


def device_name(device: torch.device) -> str:
    """The GPU's name (``NVIDIA H100 80GB HBM3``) or ``CPU <model name>, N threads``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return f"CPU {model}, {torch.get_num_threads()} threads"


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(name: str, slices: CTSlices, settings: StepSettings, size: int, steps: int, warmup: int,
            workers: int, compile_model: bool) -> dict[str, Any]:
    """One row: both loops for ``name``, or the error that stopped them (in one line)."""
    row: dict[str, Any] = {"model": name, "reference_img_s": None, "covseg_img_s": None, "ratio": None,
                           "error": None}
    start = time.perf_counter()
    try:
        row["reference_img_s"] = reference_loop(name, settings.device, size, steps, warmup)
        free_memory(settings.device)
        row["covseg_img_s"] = covseg_loop(name, slices, settings, size, steps, warmup, workers, compile_model)
        row["ratio"] = row["covseg_img_s"] / row["reference_img_s"]
    except Exception as error:  # one model failing (out of memory, say) must not end the table
        row["error"] = one_line(error)
    finally:
        free_memory(settings.device)
    row["seconds"] = time.perf_counter() - start
    return row


def markdown_table(report: dict[str, Any]) -> str:
    """The table as markdown, titled with the device, with the settings below it."""
    lines = [f"### Training speed: batch {report['batch']}, {report['size']}x{report['size']}, "
             f"{report['device_name']}", "", "| " + " | ".join(COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for row in report["rows"]:
        if row.get("skipped"):
            cells = [row["model"], "", "", "skipped", row["skipped"]]
        elif row["error"]:
            cells = [row["model"], "", "", "failed", row["error"]]
        else:
            cells = [row["model"], f"{row['reference_img_s']:.1f}", f"{row['covseg_img_s']:.1f}",
                     report["covseg_settings"], f"{row['ratio']:.2f}"]
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |")
    lines += ["", f"{report['steps']} timed steps after {report['warmup']} warm-up steps per loop; data: "
              f"{report['data']}; torch {report['torch']}; target b/a >= {TARGET_RATIO:g} on an H100-class "
              f"GPU: {report['target_met']}."]
    return "\n".join(lines) + "\n"


def main(
    models: Annotated[str, option("--models", metavar="NAMES", default_text="all",
                                  help="Comma-separated model names, or all.")] = "all",
    size: Annotated[int, option("--size", metavar="INTEGER", default_text="512",
                                help="Square image side.")] = 512,
    steps: Annotated[int, option("--steps", metavar="INTEGER", default_text="20",
                                 help="Timed steps per model and loop.")] = 20,
    warmup: Annotated[int, option("--warmup", metavar="INTEGER", default_text="3",
                                  help="Untimed steps first (cuDNN autotuning, compilation).")] = 3,
    workers: Annotated[int, option("--workers", metavar="INTEGER", default_text="4",
                                   help="DataLoader workers feeding covseg's loop.")] = 4,
    device: Annotated[str, option("--device", metavar="DEVICE", default_text="auto",
                                  help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str | None, option("--precision", metavar="NAME",
                                            default_text="bf16 on CUDA, fp32 on the CPU",
                                            help="covseg's loop: bf16 or fp32.")] = None,
    channels_last: Annotated[bool | None, option("--channels-last/--no-channels-last",
                                                 default_text="on for CUDA, off on the CPU",
                                                 help="covseg's loop.")] = None,
    compile_model: Annotated[bool, option("--compile", help="torch.compile covseg's model.")] = False,
    data: Annotated[Path | None, option("--data", metavar="PATH", default_text="the phantom",
                                        help="Slices to feed covseg's loop.")] = None,
    json_path: Annotated[Path | None, option("--json", metavar="FILE",
                                             help="Also write the rows as JSON.")] = None,
    markdown_path: Annotated[Path | None, option("--markdown", metavar="FILE",
                                                 help="Also as markdown.")] = None,
    budget_s: Annotated[float | None, option("--budget-s", metavar="SECONDS",
                                             help="Skip the models that would end after this many "
                                                  "seconds.")] = None,
) -> None:
    """Print images/s of (a) the reference loop and (b) covseg's loop, and b/a, per model."""
    started = time.perf_counter()
    torch_device = resolve_device(device)
    settings = StepSettings.for_device(torch_device, precision, channels_last)
    names = [entry.name for entry in get_registry().models()] if models == "all" else models.split(",")
    name = device_name(torch_device)
    label = settings.describe() + (", compiled" if compile_model else "")
    if data is None:
        slices = load_slices(None, None, {"count": str(PHANTOM_SLICES), "size": str(size)})
    else:
        slices = load_slices(None, data, {})
    rows: list[dict[str, Any]] = []
    for model_name in names:
        elapsed = time.perf_counter() - started
        expected = max((row["seconds"] for row in rows if "seconds" in row), default=0.0)
        if budget_s is not None and elapsed + expected > budget_s:
            left = max(budget_s - elapsed, 0)
            reason = f"not started: ~{expected:.0f} s needed, {left:.0f} s of the budget left"
            rows.append({"model": model_name, "skipped": reason})
            console.print(f"{model_name}: skipped ({reason})")
            continue
        row = measure(model_name, slices, settings, size, steps, warmup, workers, compile_model)
        rows.append(row)
        if row["error"]:
            console.print(f"{model_name}: failed: {row['error']}", soft_wrap=True)
        else:
            console.print(f"{model_name}: a {row['reference_img_s']:.1f} img/s, b {row['covseg_img_s']:.1f} "
                          f"img/s, b/a {row['ratio']:.2f} ({row['seconds']:.0f} s)")
    measured = [row for row in rows if row.get("ratio") is not None]
    report = {
        "device_name": name, "device": str(torch_device), "size": size, "batch": BATCH, "steps": steps,
        "warmup": warmup, "workers": workers, "covseg_settings": label, "data": str(data or "phantom"),
        "torch": torch.__version__, "target_ratio": TARGET_RATIO,
        "target_met": (f"{sum(row['ratio'] >= TARGET_RATIO for row in measured)} of {len(rows)} models"),
        "rows": rows,
    }
    table = Table(title=f"training speed, batch {BATCH}, {size}x{size}, {name}")
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        if row.get("skipped") or row["error"]:
            table.add_row(row["model"], "", "", "skipped" if row.get("skipped") else "failed",
                          row.get("skipped") or row["error"])
        else:
            table.add_row(row["model"], f"{row['reference_img_s']:.1f}", f"{row['covseg_img_s']:.1f}", label,
                          f"{row['ratio']:.2f}")
    console.print(table)
    console.print(f"target b/a >= {TARGET_RATIO:g} (H100-class GPU): {report['target_met']}")
    if json_path is not None:
        write_json(json_path, report)
    if markdown_path is not None:
        write_text(markdown_path, markdown_table(report))


if __name__ == "__main__":
    run_script(typer_app(main))
