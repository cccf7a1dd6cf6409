"""Data pipeline throughput: slices/s of the full training input pipeline, per DataLoader worker.

Phantom slices (512x512 by default) in a SliceDataset, batched by a DataLoader, for 0 (in the main
process), 1 and 2 workers. Two pipelines, measured in the same run on the same slices:

- baseline: no augmentation (normalised slices copied out of memory, collated);
- reference: the study's augmentation (rotation, flips, Gaussian noise; AugmentationConfig.reference()).

The table gives wall-clock slices/s with the ratio of the reference pipeline to the baseline at the
same number of workers, and the CPU time per slice summed over the main process and the workers
(Linux /proc): 1000 / that is slices/s per core, a figure that does not depend on what else the
machine runs (wall-clock rates do, on a shared machine). The last line says how many
workers feed a GPU consuming --target slices/s (250: bf16 training on an H100-class card).

    python benchmarks/data_pipeline_speed.py
    python benchmarks/data_pipeline_speed.py --size 256 --workers 0,1,2,4 --epochs 5
"""

from __future__ import annotations

import math
import os
import platform
import time
from typing import Annotated

import cv2
import torch
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from rich.table import Table
from torch.utils.data import DataLoader

from covseg.commands._common import option
from covseg.data.augment import AugmentationConfig
from covseg.data.dataset import SliceDataset, seed_worker
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.terminal import SafeConsole

console = SafeConsole()


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of processes (Linux /proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def measure(dataset: SliceDataset, workers: int, batch_size: int, epochs: int) -> tuple[float, float]:
    """(slices/s wall clock, CPU ms per slice over all processes) over ``epochs`` epochs.

    One warm-up epoch first, which also starts the (persistent) workers. CPU time counts the main
    process and the workers, so it does not depend on what else the machine is running.
    """
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        worker_init_fn=seed_worker if workers else None, persistent_workers=workers > 0,
                        generator=torch.Generator().manual_seed(0))
    dataset.set_epoch(0)
    for _ in loader:
        pass
    pids = [os.getpid(), *(process.pid for process in getattr(loader._iterator, "_workers", []))]
    count = 0
    cpu_start, start = _cpu_seconds(pids), time.perf_counter()
    for epoch in range(1, epochs + 1):
        dataset.set_epoch(epoch)
        for images, _ in loader:
            count += images.shape[0]
    wall, cpu = time.perf_counter() - start, _cpu_seconds(pids) - cpu_start
    return count / wall, 1000.0 * cpu / count


def main(
    size: Annotated[int, option("--size", metavar="INTEGER", default_text="512",
                                help="Slice side in pixels.")] = 512,
    slices: Annotated[int, option("--slices", metavar="INTEGER", default_text="64",
                                  help="Phantom slices in the data set.")] = 64,
    batch_size: Annotated[int, option("--batch-size", metavar="INTEGER", default_text="8",
                                      help="DataLoader batch size.")] = 8,
    epochs: Annotated[int, option("--epochs", metavar="INTEGER", default_text="3",
                                  help="Timed epochs per measurement (after one warm-up epoch).")] = 3,
    workers: Annotated[str, option("--workers", metavar="COUNTS", default_text="0,1,2",
                                   help="Comma-separated DataLoader worker counts.")] = "0,1,2",
    target: Annotated[float, option("--target", metavar="NUMBER", default_text="250.0",
                                    help="Slices/s the GPU consumes.")] = 250.0,
) -> None:
    """Print the table of slices/s and the workers needed for --target."""
    # One thread per process for torch and OpenCV, set before any work (the workers inherit it):
    # one worker is then exactly one core, which is what "per worker" means below.
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    data = load_slices("phantom", None, {"count": str(slices), "size": str(size)})
    pipelines = {
        "baseline (no augmentation)": SliceDataset(data, data.ids, Normalisation()),
        "reference augmentation": SliceDataset(
            data, data.ids, Normalisation(), augmentation=AugmentationConfig.reference()
        ),
    }
    counts = [int(value) for value in workers.split(",")]
    results = {(name, count): measure(dataset, count, batch_size, epochs)
               for count in counts for name, dataset in pipelines.items()}

    table = Table(title=f"data pipeline: {size}x{size} phantom slices, batch {batch_size}")
    columns = ("pipeline", "workers", "slices/s", "ratio to baseline", "CPU ms/slice", "slices/s per core")
    for column in columns:
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    baseline_name = next(iter(pipelines))
    for name in pipelines:
        for count in counts:
            rate, cpu_ms = results[(name, count)]
            table.add_row(name, str(count), f"{rate:.0f}", f"{rate / results[(baseline_name, count)][0]:.2f}",
                          f"{cpu_ms:.1f}", f"{1000.0 / cpu_ms:.0f}")
    console.print(table)
    console.print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
                  f"average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, opencv {cv2.__version__}")
    with_workers = [results[("reference augmentation", count)][1] for count in counts if count > 0]
    if with_workers:
        per_core = 1000.0 / max(with_workers)
        console.print(f"reference pipeline with workers: {per_core:.0f} slices/s per core (augmentation, "
                      f"collation and the transfer to the main process); {target:.0f} slices/s needs about "
                      f"{math.ceil(target / per_core)} worker(s) on free cores")

if __name__ == "__main__":
    run_script(typer_app(main))
