"""A training run folder on disk: its layout, in one place, and the readers of its files.

``runs/<model>/<YYYYmmdd-HHMMSS>/`` (``-2``, ``-3``... when that second is taken) holds:

========================  =====================================================================
``config.json``           every setting of the run (:class:`covseg.training.config.TrainConfig`)
``split.json``            the slice ids of each subset (:class:`covseg.data.split.Split`)
``metrics.jsonl``         one JSON object per finished epoch (training loss, validation metrics)
``best.pt``               the weights of the epoch with the highest validation mIoU
``last.pt``               the latest epoch with optimiser, scheduler and RNG states (``--resume``)
``summary.json``          the run's outcome; its presence means the run finished
``slice_confusions.json`` one confusion matrix per scored slice (validation, test): intervals
========================  =====================================================================

A cross-validation (``covseg train MODEL --folds K``) is a run folder too: its ``config.json``
has ``folds`` K (and no ``fold``), its ``split.json`` holds the folds, ``fold-0/`` ..
``fold-<K-1>/`` are ordinary run folders, and ``ensemble.json`` lists their best.pt files;
its ``summary.json`` holds the out-of-fold and the ensemble's test metrics.

Every file is written through :func:`covseg.files.atomic_write`. This module imports no torch, so
listing, reading and checking runs stays cheap.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from covseg.core.errors import CovsegError
from covseg.files import describe_os_error, read_json_lines, read_json_object, write_json_lines

RUN_CONFIG = "config.json"
RUN_SPLIT = "split.json"
METRICS_LOG = "metrics.jsonl"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
SUMMARY = "summary.json"
SLICE_CONFUSIONS = "slice_confusions.json"
ENSEMBLE = "ensemble.json"
SUBSETS = ("val", "train", "test", "all")
"""The slices of a run ``covseg eval --split NAME`` scores: its validation, training or test subset,
or all of them."""


def fold_dir(cross_validation_dir: Path, fold: int) -> Path:
    """``fold-<k>``: the run folder of fold k (0-based) inside a cross-validation folder."""
    return Path(cross_validation_dir) / f"fold-{fold}"


def create_run_dir(out: Path, model: str, now: float | None = None) -> Path:
    """A new, empty ``out/model/<timestamp>`` folder; ``-2``, ``-3``... when that second is taken.

    ``mkdir(exist_ok=False)`` makes the claim atomic, so two runs started in the same second (two
    processes, or a benchmark looping over models) never share a folder.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parent = Path(out) / model
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for suffix in range(1, 10_000):
            candidate = parent / (stamp if suffix == 1 else f"{stamp}-{suffix}")
            try:
                candidate.mkdir()
            except FileExistsError:
                continue
            return candidate
    except OSError as error:
        reason = describe_os_error(error, parent, "create the run folder")
        raise CovsegError(f"--out {out}: {reason}") from None
    raise CovsegError(f"--out {out}: could not find a free run folder name for {stamp}")


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a run folder (it holds config.json)."""
    return (Path(path) / RUN_CONFIG).is_file()


def is_cross_validation(path: Path) -> bool:
    """Whether ``path`` is a cross-validation folder: a run folder whose config has ``folds`` set and
    no ``fold`` (a fold's own run records which fold it is)."""
    if not is_run_dir(path):
        return False
    config = read_run_config(path)
    return config.get("folds") is not None and config.get("fold") is None


def read_run_config(run_dir: Path) -> dict[str, Any]:
    """A run's config.json as a dict; one-line error when it is missing or not a JSON object."""
    return read_json_object(Path(run_dir) / RUN_CONFIG, f"; {run_dir} is not a covseg run folder")


def read_summary(run_dir: Path) -> dict[str, Any]:
    """A finished run's summary.json."""
    return read_json_object(Path(run_dir) / SUMMARY, f"; the run in {run_dir} has not finished")


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The epoch records of a run's metrics.jsonl (empty when there is none yet).

    Each record must carry an integer ``epoch``; a damaged file is one line naming it.
    """
    path = Path(run_dir) / METRICS_LOG
    if not path.is_file():
        return []
    records = read_json_lines(path)
    for number, record in enumerate(records, start=1):
        epoch = record.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise CovsegError(f"{path}: record {number} has no valid 'epoch' (got {epoch!r})")
    return records


class MetricsLog:
    """metrics.jsonl: one record per finished epoch, rewritten atomically on every append.

    The whole file is rewritten (a few hundred kB after 1500 epochs, far less than a checkpoint),
    so a killed run never leaves a half-written line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def load(self, up_to_epoch: int) -> None:
        """Read an existing log, keeping the epochs a resumed run has checkpoints for."""
        self.records = [record for record in read_metrics(self.path.parent) if record["epoch"] <= up_to_epoch]
        self._write()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        self._write()

    def _write(self) -> None:
        write_json_lines(self.path, self.records)
