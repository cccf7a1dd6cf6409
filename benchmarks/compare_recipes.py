"""Train one model with ``--recipe reference`` and ``--recipe default`` for the same epochs, and compare.

Both runs use the same data, split, seed, image size and epoch budget; only the recipe differs
(reference: Adam lr 1e-5 constant, cross-entropy; default: AdamW lr 1e-3 warm-up + cosine,
cross-entropy + lesion Dice). Prints the validation metrics of each run's best epoch and the gain.

    python benchmarks/compare_recipes.py --epochs 20 --image-size 64 --dataset-option count=40
    python benchmarks/compare_recipes.py --epochs 20 --image-size 64 --data ../shared/data/medseg100
"""

from __future__ import annotations

import json
import platform
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
DEFAULT_OUT = Path("runs/recipes")
COLUMNS = ("miou", "lesion_miou", "iou/ground-glass", "iou/consolidation", "iou/effusion", "pixel_accuracy")


def main(
    model: Annotated[str, option("--model", metavar="NAME", default_text="unet",
                                 help="Model to train.")] = "unet",
    epochs: Annotated[int, option("--epochs", metavar="INTEGER", default_text="20",
                                  help="Epochs for both recipes.")] = 20,
    image_size: Annotated[int, option("--image-size", metavar="INTEGER", default_text="64",
                                      help="Square side of the slices.")] = 64,
    data: Annotated[Path | None, option("--data", metavar="PATH", default_text="the phantom",
                                        help="Data path.")] = None,
    dataset_option: Annotated[
        list[str] | None, option("--dataset-option", metavar="KEY=VALUE",
                                 help="Dataset setting (repeatable).")
    ] = None,
    batch_size: Annotated[int, option("--batch-size", metavar="INTEGER", default_text="8",
                                      help="Batch of both (the study's is 8).")] = 8,
    workers: Annotated[int, option("--workers", metavar="INTEGER", default_text="0",
                                   help="DataLoader workers.")] = 0,
    device: Annotated[str, option("--device", metavar="DEVICE", default_text="auto",
                                  help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, option("--seed", metavar="INTEGER", default_text="0",
                                help="Seed of split, initialisation and augmentation.")] = 0,
    out: Annotated[Path, option("--out", metavar="DIR", default_text=str(DEFAULT_OUT),
                                help="Where the two runs go.")] = DEFAULT_OUT,
) -> None:
    """Print best-epoch validation metrics of both recipes and default - reference."""
    results = {}
    for recipe in ("reference", "default"):
        config = TrainConfig.from_recipe(
            model,
            recipe=recipe,
            epochs=epochs,
            image_size=image_size,
            batch_size=batch_size,
            data=str(data) if data else None,
            dataset_options=parse_dataset_options(dataset_option),
            workers=workers,
            device=device,
            seed=seed,
            out=str(out / recipe),
        )
        run_dir = train(config)
        results[recipe] = json.loads((run_dir / "summary.json").read_text())
        console.print(f"{recipe}: {run_dir}")
    first = results["reference"]
    where = data if data else "phantom " + " ".join(dataset_option or [])
    hardware = (
        torch.cuda.get_device_name() if first["device"].startswith("cuda") else platform.machine() + " CPU"
    )
    table = Table(
        title=f"{model}, {epochs} epochs, {image_size}x{image_size}, batch {batch_size}, {where}, {hardware}"
    )
    for column in ("recipe", "best epoch", *COLUMNS, "wall time (s)"):
        table.add_column(column, justify="left" if column == "recipe" else "right")
    for recipe, summary in results.items():
        best = summary["best_metrics"]
        table.add_row(
            recipe,
            str(summary["best_epoch"]),
            *(_cell(best.get(key)) for key in COLUMNS),
            f"{summary['wall_time_s']:.0f}",
        )
    gains = [
        _gain(results["default"]["best_metrics"].get(key), first["best_metrics"].get(key)) for key in COLUMNS
    ]
    table.add_row("default - reference", "", *gains, "")
    console.print(table)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _gain(new: float | None, old: float | None) -> str:
    return "-" if new is None or old is None else f"{new - old:+.3f}"


if __name__ == "__main__":
    run_script(typer_app(main))
