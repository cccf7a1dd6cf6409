"""What the commands show while they work: the training progress bar and table, the download bars.

:class:`TrainingProgress` is a listener of a run's lifecycle hooks (:mod:`covseg.core.hookspecs`),
attached by ``covseg train`` and ``covseg benchmark``: one bar over all epochs with the live loss
and the latest/best mIoU, an epoch line when the mIoU improves and at regular intervals (so a log
file, with no live bar, still tells the story) and, when the run finishes, the table of its best
and final validation metrics. The library itself prints nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from covseg.core.hookspecs import hookimpl
from covseg.evaluation import bootstrap
from covseg.evaluation.scores import TEST, VALIDATION
from covseg.terminal import Table

HEADLINE_METRICS = ("miou", "lesion_miou", "pixel_accuracy", "mean_lesion_dice")
EPOCH_LINES = 20
"""About this many epoch lines per run, besides those of a new best mIoU."""


def format_metric(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


class TrainingProgress:
    """The train command's view of a run (see the module docstring)."""

    def __init__(self, console: Console):
        self.console = console
        self.progress: Progress | None = None

    @hookimpl
    def covseg_train_start(self, config: Mapping[str, Any], first_epoch: int, steps_per_epoch: int) -> None:
        self.total_epochs = int(config["epochs"])
        self.steps_per_epoch = steps_per_epoch
        self.print_every = max(1, self.total_epochs // EPOCH_LINES)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  mIoU {task.fields[miou]}  best {task.fields[best]}",
                       markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.progress.add_task(
            "train",
            total=self.total_epochs * steps_per_epoch,
            completed=(first_epoch - 1) * steps_per_epoch,
            epoch=f"{first_epoch}/{self.total_epochs}",
            loss="-",
            miou="-",
            best="-",
        )
        self.progress.start()

    @hookimpl
    def covseg_train_progress(self, epoch: int, steps: int, loss: float) -> None:
        """Live loss: the mean of this epoch so far."""
        self.progress.update(self.task, completed=(epoch - 1) * self.steps_per_epoch + steps,
                             epoch=f"{epoch}/{self.total_epochs}", loss=f"{loss:.4f}")

    @hookimpl
    def covseg_epoch_end(self, epoch: int, record: Mapping[str, Any], best_epoch: int,
                         best_metrics: Mapping[str, Any]) -> None:
        is_best = best_epoch == epoch
        self.progress.update(
            self.task,
            completed=epoch * self.steps_per_epoch,
            epoch=f"{epoch}/{self.total_epochs}",
            loss=f"{record['train_loss']:.4f}",
            miou=format_metric(record.get("miou")),
            best=format_metric(best_metrics.get("miou")),
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

    @hookimpl
    def covseg_train_end(self, status: str, summary: Mapping[str, Any] | None) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if status == "finished" and summary is not None:
            self.console.print(results_table(summary))
            if summary.get(VALIDATION) or summary.get(TEST):
                held_out = " and test" if summary.get(TEST) else ""
                title = f"{summary['model']}: validation (selection){held_out}"
                self.console.print(scores_table(summary, title))


def results_table(summary: Mapping[str, Any]) -> Table:
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


def scores_table(blocks: Mapping[str, Any], title: str, keys: tuple[str, ...] = HEADLINE_METRICS) -> Table:
    """The headline metrics of the ``validation`` and ``test`` blocks, each with its interval."""
    confidence = round(100 * bootstrap.CONFIDENCE)
    validation, test = blocks.get(VALIDATION), blocks.get(TEST)
    counts = [f"{label} {block['slices']} slices" for label, block in (("validation", validation),
                                                                         ("test", test)) if block]
    table = Table(title=f"{title} ({', '.join(counts) or 'nothing scored'})")
    table.add_column("metric")
    for label in ("validation", "test"):
        table.add_column(label, justify="right")
        table.add_column(f"{confidence}% CI", justify="right")
    for key in keys:
        cells = []
        for block in (validation, test):
            if block is None:
                cells += ["-", "-"]
                continue
            cells += [format_metric(block["metrics"].get(key)), format_interval(block["intervals"].get(key))]
        table.add_row(key, *cells)
    table.caption = (f"validation: where the epoch was chosen (optimistic); test: unseen, scored once. "
                     f"CI: percentile bootstrap over slices, {bootstrap.RESAMPLES} resamples"
                     if test is not None else
                     f"no test set: the validation figures, where the epoch was chosen, are optimistic. "
                     f"CI: percentile bootstrap over slices, {bootstrap.RESAMPLES} resamples")
    return table


def format_interval(interval: Any) -> str:
    if not interval:
        return "-"
    return f"{interval[0]:.3f}-{interval[1]:.3f}"


class DownloadBars:
    """One bar per file of ``covseg data fetch``: its ``update`` is fetch_files' ``on_progress``."""

    def __init__(self, console: Console):
        self.progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                                 console=console)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> DownloadBars:
        return self  # started by the first download: a fetch that fails before one prints no blank line

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            self.progress.stop()

    def update(self, name: str, written: int, total: int | None) -> None:
        if not self.tasks:
            self.progress.start()
        if name not in self.tasks:
            self.tasks[name] = self.progress.add_task(name, total=total, completed=written)
        self.progress.update(self.tasks[name], completed=written, total=total)
