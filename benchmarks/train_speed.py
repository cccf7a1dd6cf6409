"""Training throughput: a plain reference-style loop against covseg's training step, same run.

For each model, on the same device and in the same process:

(a) reference: the study's loop as usually written: float32, eager, Adam, cross-entropy, batch 8,
    on tensors already on the device (the model step only: no data pipeline at all);
(b) covseg: covseg's own step (:func:`covseg.training.loop.train_one_epoch`: bf16 autocast and
    channels-last on CUDA, float32 on the CPU, optional torch.compile), fed through the real data
    pipeline: phantom slices in a SliceDataset with the reference augmentation, DataLoader workers,
    pinned memory.

It prints images/s of both and the ratio b/a. The target b/a >= 2 is for an H100/H200 (bf16 tensor
cores); a CPU has no bf16 gain, so there b/a stays near 1 (or below, the augmentation costing CPU).

    python benchmarks/train_speed.py                                  # every model, 512x512, GPU
    python benchmarks/train_speed.py --models unet,fcn-resnet50 --size 64 --steps 6 --device cpu
"""

from __future__ import annotations

import itertools
import platform
import time
from pathlib import Path

import torch
import typer
from rich.table import Table

from covseg.core.entries import CTSlices
from covseg.core.registry import create_model, get_registry
from covseg.data.loading import load_slices
from covseg.devices import resolve_device
from covseg.terminal import SafeConsole
from covseg.training.config import TrainConfig
from covseg.training.distributed import DistributedContext
from covseg.training.loaders import TrainingData, build_training_data, choose_split
from covseg.training.loop import StepSettings, train_one_epoch
from covseg.training.losses import build_loss
from covseg.training.optim import build_optimizer

console = SafeConsole()
BATCH = 8


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reference_loop(name: str, device: torch.device, size: int, steps: int, warmup: int) -> float:
    """Images/s of the plain loop: fp32, eager, Adam lr 1e-5, cross-entropy, batch 8."""
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


PHANTOM_SLICES = 40
"""Phantom slices generated once per benchmark run; the loader cycles over them epoch after epoch."""


def endless_batches(data: TrainingData):
    """The training loader epoch after epoch (new shuffle and augmentation each time)."""
    for epoch in itertools.count():
        data.set_epoch(epoch)
        yield from data.train_loader


def covseg_loop(
    name: str,
    slices: CTSlices,
    device: torch.device,
    size: int,
    steps: int,
    warmup: int,
    workers: int,
    compile_model: bool,
) -> tuple[float, str]:
    """Images/s of covseg's step over the real, augmented data pipeline; also the precision used."""
    config = TrainConfig.from_recipe(
        name, batch_size=BATCH, image_size=size, workers=workers, compile=compile_model, recalibrate_bn=False
    )
    context = DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    data = build_training_data(config, slices, choose_split(config, slices), context)
    settings = StepSettings.for_device(device, amp=True)
    torch.manual_seed(0)
    model = settings.prepare_model(create_model(name))
    optimizer = build_optimizer(config.optimizer, model, config.lr, config.weight_decay)
    loss_fn = build_loss(config.loss, config.num_classes).to(device)
    step_model = torch.compile(model) if compile_model else model
    batches = endless_batches(data)
    train_one_epoch(step_model, itertools.islice(batches, warmup), optimizer, loss_fn, settings)
    result = train_one_epoch(step_model, itertools.islice(batches, steps), optimizer, loss_fn, settings)
    return result.images / result.seconds, settings.precision


def device_name(device: torch.device) -> str:
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


def main(
    models: str = typer.Option("all", "--models", help="Comma-separated model names, or all."),
    size: int = typer.Option(512, "--size", help="Square image side."),
    steps: int = typer.Option(20, "--steps", help="Timed steps per model and loop."),
    warmup: int = typer.Option(3, "--warmup", help="Untimed steps first (cuDNN autotuning, compilation)."),
    workers: int = typer.Option(4, "--workers", help="DataLoader workers feeding covseg's loop."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile covseg's model."),
) -> None:
    """Print images/s of (a) the reference loop and (b) covseg's loop, and b/a, per model."""
    torch_device = resolve_device(device)
    if torch_device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    names = [entry.name for entry in get_registry().models()] if models == "all" else models.split(",")
    table = Table(title=f"training speed, batch {BATCH}, {size}x{size}, {device_name(torch_device)}")
    for column in ("model", "a: reference fp32 eager (img/s)", "b: covseg (img/s)", "b precision", "b/a"):
        table.add_column(column, justify="left" if column == "model" else "right")
    slices = load_slices(None, None, {"count": str(PHANTOM_SLICES), "size": str(size)})
    for name in names:
        reference = reference_loop(name, torch_device, size, steps, warmup)
        covseg, precision = covseg_loop(
            name, slices, torch_device, size, steps, warmup, workers, compile_model
        )
        label = (
            precision
            + (" + compile" if compile_model else "")
            + (" + channels-last" if torch_device.type == "cuda" else "")
        )
        table.add_row(name, f"{reference:.1f}", f"{covseg:.1f}", label, f"{covseg / reference:.2f}")
        console.print(f"{name}: a {reference:.1f} img/s, b {covseg:.1f} img/s")
    console.print(table)


if __name__ == "__main__":
    typer.run(main)
