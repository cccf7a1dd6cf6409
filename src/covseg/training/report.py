"""What a training run shows: a rich progress bar with live loss and mIoU, and the final table."""

from __future__ import annotations

import math
from typing import Any

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

HEADLINE_METRICS = ("miou", "lesion_miou", "pixel_accuracy", "mean_lesion_dice")


def format_metric(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


class TrainingProgress:
    """One bar over all epochs; its line shows the running loss and the latest/best mIoU.

    An epoch line is printed above the bar when the validation mIoU improves and at regular
    intervals, so a log file (no live bar) still tells the story.
    """

    def __init__(self, console: Console, total_epochs: int, first_epoch: int, steps_per_epoch: int):
        self.console = console
        self.total_epochs = total_epochs
        self.steps_per_epoch = steps_per_epoch
        self.print_every = max(1, total_epochs // 20)
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  mIoU {task.fields[miou]}  best {task.fields[best]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(
            "train",
            total=total_epochs * steps_per_epoch,
            completed=(first_epoch - 1) * steps_per_epoch,
            epoch=f"{first_epoch}/{total_epochs}",
            loss="-",
            miou="-",
            best="-",
        )
        self._epoch_start = (first_epoch - 1) * steps_per_epoch

    def __enter__(self) -> TrainingProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start_epoch(self, epoch: int) -> None:
        self._epoch_start = (epoch - 1) * self.steps_per_epoch
        self.progress.update(self.task, completed=self._epoch_start, epoch=f"{epoch}/{self.total_epochs}")

    def on_steps(self, steps: int, loss_sum: torch.Tensor) -> None:
        """Live loss (the mean of this epoch so far); reading the tensor syncs the device."""
        self.progress.update(
            self.task, completed=self._epoch_start + steps, loss=f"{loss_sum.item() / steps:.4f}"
        )

    def end_epoch(self, record: dict[str, Any], best_miou: float, is_best: bool) -> None:
        epoch = record["epoch"]
        self.progress.update(
            self.task,
            completed=epoch * self.steps_per_epoch,
            loss=f"{record['train_loss']:.4f}",
            miou=format_metric(record.get("miou")),
            best=format_metric(best_miou),
        )
        if is_best or epoch % self.print_every == 0 or epoch == self.total_epochs:
            line = Text(
                f"epoch {epoch}/{self.total_epochs}  loss {record['train_loss']:.4f}  "
                f"mIoU {format_metric(record.get('miou'))}  "
                f"lesion mIoU {format_metric(record.get('lesion_miou'))}  "
                f"{record['images_per_s']:.1f} img/s"
            )
            if is_best:
                line.append(" (best)", style="green")
            self.console.print(line)


def results_table(summary: dict[str, Any]) -> Table:
    """Validation metrics of the best and the final epoch, headline metrics first."""
    best, final = summary["best_metrics"], summary["final_metrics"]
    table = Table(title=f"{summary['model']}: validation after {summary['epochs_run']} epoch(s)")
    table.add_column("metric")
    table.add_column(f"best (epoch {summary['best_epoch']})", justify="right")
    table.add_column("final", justify="right")
    keys = [key for key in HEADLINE_METRICS if key in best or key in final]
    keys += [key for key in {**best, **final} if key not in keys]
    for key in keys:
        table.add_row(key, format_metric(best.get(key)), format_metric(final.get(key)))
    table.caption = (
        f"{summary['params_m']:.1f} M parameters, {summary['train_images_per_s']:.1f} training img/s, "
        f"{summary['wall_time_s']:.0f} s"
    )
    return table
