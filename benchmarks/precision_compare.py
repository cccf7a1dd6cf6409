"""bf16 autocast (with channels-last) against float32: does bf16 cost accuracy beyond seed noise?

For each seed, one model is trained twice with everything else equal (data, split, initialisation,
augmentation, schedule): ``--precision fp32 --no-channels-last`` and ``--precision bf16
--channels-last``. It prints each run's best-epoch validation metrics, the mean and sample
standard deviation over seeds per precision, and the mean of the paired differences (bf16 - fp32)
against the seed-to-seed standard deviation of fp32. On the CPU this is an accuracy check only
(PyTorch's CPU autocast runs the same bf16 arithmetic as CUDA's, not its speed).

    python benchmarks/precision_compare.py --epochs 15 --image-size 64 --dataset-option count=40 --seeds 0,1,2
"""

from __future__ import annotations

import json
import platform
import statistics
from pathlib import Path
from typing import Annotated

import torch
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from rich.table import Table

from covseg.commands._common import option
from covseg.data.options import parse_dataset_options
from covseg.terminal import SafeConsole
from covseg.training import TrainConfig, train

console = SafeConsole()
DEFAULT_OUT = Path("runs/precision")
ARMS = {"fp32": {"precision": "fp32", "channels_last": False},
        "bf16": {"precision": "bf16", "channels_last": True}}
METRICS = ("miou", "lesion_miou", "pixel_accuracy", "iou/ground-glass", "iou/consolidation", "iou/effusion")


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def main(
    model: Annotated[str, option("--model", metavar="NAME", default_text="unet",
                                 help="Model to train.")] = "unet",
    epochs: Annotated[int, option("--epochs", metavar="INTEGER", default_text="15",
                                  help="Epochs of every run.")] = 15,
    image_size: Annotated[int, option("--image-size", metavar="INTEGER", default_text="64",
                                      help="Square side of the slices.")] = 64,
    seeds: Annotated[str, option("--seeds", metavar="SEEDS", default_text="0,1,2",
                                 help="Comma-separated seeds.")] = "0,1,2",
    data: Annotated[Path | None, option("--data", metavar="PATH", default_text="the phantom",
                                        help="Data path.")] = None,
    dataset_option: Annotated[
        list[str] | None, option("--dataset-option", metavar="KEY=VALUE",
                                 help="Dataset setting (repeatable).")
    ] = None,
    workers: Annotated[int, option("--workers", metavar="INTEGER", default_text="0",
                                   help="DataLoader workers.")] = 0,
    device: Annotated[str, option("--device", metavar="DEVICE", default_text="cpu",
                                  help="auto, cpu, cuda or cuda:N.")] = "cpu",
    out: Annotated[Path, option("--out", metavar="DIR", default_text=str(DEFAULT_OUT),
                                help="Where the runs go.")] = DEFAULT_OUT,
) -> None:
    """Print best-epoch validation metrics of fp32 and bf16 runs per seed, their means and differences."""
    seed_list = [int(seed) for seed in seeds.split(",")]
    summaries: dict[str, dict[int, dict]] = {arm: {} for arm in ARMS}
    for seed in seed_list:
        for arm, values in ARMS.items():
            config = TrainConfig.from_recipe(
                model, epochs=epochs, image_size=image_size, data=str(data) if data else None,
                dataset_options=parse_dataset_options(dataset_option), workers=workers, device=device,
                seed=seed, checkpoint_every=epochs, out=str(out / arm / f"seed{seed}"), **values)
            run_dir = train(config, SafeConsole(quiet=True))
            summaries[arm][seed] = json.loads((run_dir / "summary.json").read_text())
            best = summaries[arm][seed]["best_metrics"]
            console.print(f"seed {seed} {arm}: mIoU {best['miou']:.4f} ({run_dir})")
    where = data if data else "phantom " + " ".join(dataset_option or [])
    hardware = torch.cuda.get_device_name() if device.startswith("cuda") else f"{platform.machine()} CPU"
    table = Table(title=f"{model}, {epochs} epochs, {image_size}x{image_size}, {where}, {hardware}")
    for column in ("precision", "seed", "best epoch", *METRICS, "wall s"):
        table.add_column(column, justify="left" if column == "precision" else "right")
    for arm in ARMS:
        for seed in seed_list:
            summary = summaries[arm][seed]
            best = summary["best_metrics"]
            table.add_row(arm, str(seed), str(summary["best_epoch"]),
                          *(_cell(best.get(key)) for key in METRICS), f"{summary['wall_time_s']:.0f}")
    console.print(table)
    for key in METRICS:
        fp32 = [summaries["fp32"][seed]["best_metrics"].get(key) for seed in seed_list]
        bf16 = [summaries["bf16"][seed]["best_metrics"].get(key) for seed in seed_list]
        if None in fp32 or None in bf16 or len(seed_list) < 2:
            continue
        differences = [b - f for b, f in zip(bf16, fp32, strict=True)]
        per_seed = ", ".join(f"{difference:+.4f}" for difference in differences)
        console.print(f"{key}: fp32 {statistics.mean(fp32):.4f} ± {statistics.stdev(fp32):.4f}, "
                      f"bf16 {statistics.mean(bf16):.4f} ± {statistics.stdev(bf16):.4f}; paired bf16 - fp32 "
                      f"{statistics.mean(differences):+.4f} (per seed {per_seed})")


if __name__ == "__main__":
    run_script(typer_app(main))
