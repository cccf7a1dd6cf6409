"""Plugin: ``--log tensorboard``, a run's curves and validation overlays as TensorBoard event files.

Writes ``RUN/tensorboard/`` (``tensorboard --logdir runs`` shows every run under runs/): per epoch
the scalars ``train/loss``, ``train/lr``, ``speed/images_per_s``, ``validation/<metric>`` for every
validation metric (``validation/miou``, ``validation/iou/effusion``, ...), and one image per fixed
validation slice, ``overlay/<slice id>``: image | truth | prediction (ground-glass yellow,
consolidation red, effusion blue). Steps are epochs; a resumed run drops what the stopped one
logged after its last checkpoint. The ``tensorboard`` package is the ``covseg[tensorboard]`` extra;
the writer is ``torch.utils.tensorboard``'s.

It is built on the lifecycle hooks, as an MLflow or W&B logger would be (README: "Writing a
plugin").
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from covseg.plugins import CovsegError, LoggerEntry, ValidationSamples, hookimpl, side_by_side

TENSORBOARD_DIR = "tensorboard"
"""The run's sub-folder for the event files."""
EXTRA = "pip install 'covseg[tensorboard]'"


def create_tensorboard_logger() -> TensorBoardLogger:
    """The run's logger; one line naming the extra when the tensorboard package is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        raise CovsegError(f"--log tensorboard needs the tensorboard package: {EXTRA}")
    return TensorBoardLogger()


class TensorBoardLogger:
    """One run's event files (see the module docstring)."""

    def __init__(self) -> None:
        self.writer: Any = None

    @hookimpl
    def covseg_train_start(self, run_dir: Path, first_epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step hides the epochs a stopped run logged after the checkpoint it resumes from.
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR),
                                    purge_step=first_epoch if first_epoch > 1 else None)

    @hookimpl
    def covseg_epoch_end(
        self,
        epoch: int,
        record: Mapping[str, float],
        metrics: Mapping[str, float],
        samples: ValidationSamples,
    ) -> None:
        writer = self.writer
        writer.add_scalar("train/loss", record["train_loss"], epoch)
        writer.add_scalar("train/lr", record["lr"], epoch)
        writer.add_scalar("speed/images_per_s", record["images_per_s"], epoch)
        for name, value in metrics.items():
            writer.add_scalar(f"validation/{name}", value, epoch)
        for sample in samples.predict():
            picture = side_by_side(sample.image, sample.truth, sample.prediction)
            writer.add_image(f"overlay/{sample.slice_id}", picture, epoch, dataformats="HWC")
        writer.flush()

    @hookimpl
    def covseg_train_end(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@hookimpl
def covseg_loggers() -> list[LoggerEntry]:
    return [
        LoggerEntry(
            "tensorboard",
            create_tensorboard_logger,
            "TensorBoard event files in RUN/tensorboard/: loss, lr, validation metrics and "
            "image | truth | prediction overlays per epoch (extra: covseg[tensorboard]).",
        ),
    ]
