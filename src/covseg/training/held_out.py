"""The test set of a run, and the scores a finished run reports: validation (selection) and test.

A run's best epoch is chosen on its validation slices, so its validation score is optimistic: on
16-20 slices, picking the best of many epochs inflates it. The test set is what the score is
honest on: slices that never reach training, validation, batch-norm recalibration or class
weights (the split keeps them out of every loader that training builds), scored **once**, after
the last epoch, with the weights of best.pt. Two ways to get one:

- ``--test-fraction F``: carved out of the data (seeded) before the train/validation split; its
  ids are ``test_ids`` in split.json.
- ``--test-data PATH`` (``--test-dataset``, ``--test-dataset-option``): a separate labelled set.
  Refused when it holds a slice whose pixels equal a training or validation slice's.

Both scores come with percentile bootstrap intervals over slices
(:mod:`covseg.evaluation.bootstrap`); the per-slice confusions behind them are kept in the run's
slice_confusions.json.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg import runs
from covseg.checkpoint import load_checkpoint
from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices, resolve_dataset
from covseg.data.split import Split
from covseg.evaluation import bootstrap
from covseg.evaluation.evaluate import evaluate_slices
from covseg.evaluation.scores import TEST, VALIDATION, Score, write_slice_confusions
from covseg.evaluation.trained import evaluation_loader
from covseg.training.config import TrainConfig

VAL_SLICE_CONFUSIONS = "val_slice_confusions"
VAL_SLICE_IDS = "val_slice_ids"
"""best.pt keys: the per-slice confusions of the validation that chose it, and their slice ids."""


@dataclass
class TestSet:
    """The slices a run is tested on: ``ids`` out of ``slices``, and where they come from."""

    slices: CTSlices
    ids: list[str]
    source: str


def prepare_test_set(config: TrainConfig, slices: CTSlices, split: Split) -> TestSet | None:
    """The run's test set (None without one); one-line errors for test data that cannot serve.

    ``slices`` are the run's own; ``split`` its split (whose ``test_ids`` it never trains on).
    """
    if config.test_data is not None or config.test_dataset is not None:
        test = load_test_slices(config, slices)
        where = f"--test-data {config.test_data}" if config.test_data else f"--test-dataset {test.source}"
        return TestSet(test, list(test.ids), where)
    if split.test_ids:
        return TestSet(slices, list(split.test_ids), "split.json test_ids")
    return None


def load_test_slices(config: TrainConfig, training: CTSlices) -> CTSlices:
    """The separate test set of ``--test-data``/``--test-dataset``, checked against the training data."""
    data = Path(config.test_data) if config.test_data else None
    where = f"--test-data {config.test_data}" if config.test_data else f"--test-dataset {config.test_dataset}"
    try:
        dataset = resolve_dataset(config.test_dataset, data)
        option = TrainConfig.settings()["test_dataset_options"].option  # --test-dataset-option
        test = load_slices(dataset, data, config.test_dataset_options, option=option)
    except CovsegError as error:  # say that the file is the test data's
        raise CovsegError(f"{where} (the test data): {error}") from None
    if test.masks is None:
        raise CovsegError(f"{where}: {test.source} has no label masks; a test set needs them")
    if test.labels != training.labels:
        raise CovsegError(f"{where}: {test.source} is labelled {test.labels.describe()}, the training data "
                          f"{training.labels.describe()}; a model is tested on masks of its own classes")
    if test.intensity != training.intensity:
        raise CovsegError(f"{where}: {test.source} holds {test.intensity} slices, the training data "
                          f"{training.intensity}; a model is tested on data of its own kind")
    fingerprints = {_fingerprint(image): slice_id for slice_id, image in zip(training.ids, training.images,
                                                                             strict=True)}
    for slice_id, image in zip(test.ids, test.images, strict=True):
        twin = fingerprints.get(_fingerprint(image))
        if twin is not None:
            raise CovsegError(f"{where}: test slice '{slice_id}' has the very pixels of training data slice "
                              f"'{twin}'; a test set must be unseen")
    return test


def _fingerprint(image: np.ndarray) -> bytes:
    array = np.ascontiguousarray(image)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.digest()


def score_finished_run(
    run_dir: Path,
    model: torch.nn.Module,
    config: TrainConfig,
    test_set: TestSet | None,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    class_names: list[str],
    channels_last: bool = False,
) -> dict[str, Any]:
    """The summary.json blocks ``validation`` and ``test`` of a finished run, scored with best.pt.

    Loads best.pt's weights into ``model`` (this process's, not wrapped for DDP), takes the
    per-slice confusions its validation kept, scores the test set once (on this process only),
    and writes slice_confusions.json. ``autocast_dtype`` and ``channels_last`` as the run trained.
    A run without best.pt (no epoch had a finite mIoU) reports neither. The command line shows the
    blocks (:func:`covseg.commands._progress.scores_table`).
    """
    best_path = Path(run_dir) / runs.BEST_CHECKPOINT
    blocks: dict[str, Any] = {VALIDATION: None, TEST: None, "bootstrap": bootstrap.settings()}
    if not best_path.is_file():
        return blocks
    best = load_checkpoint(best_path, map_location=device)
    epoch = int(best["epoch"])
    scores: dict[str, Score] = {}
    if VAL_SLICE_CONFUSIONS in best:  # best.pt of an older covseg has none: no validation interval
        scores[VALIDATION] = Score.of(best[VAL_SLICE_IDS], best[VAL_SLICE_CONFUSIONS].cpu().numpy(),
                                      class_names)
        blocks[VALIDATION] = scores[VALIDATION].summary(
            f"best epoch {epoch}, chosen on these slices (optimistic)", epoch=epoch)
    if test_set is not None:
        model.load_state_dict(best["state_dict"])
        normalisation = Normalisation.from_dict(best["normalisation"])
        loader, _ = evaluation_loader(test_set.slices, test_set.ids, normalisation, config.image_size,
                                      config.batch_size, device)
        confusions = evaluate_slices(model, loader, device, config.num_classes, autocast_dtype,
                                     channels_last=channels_last)
        scores[TEST] = Score.of(test_set.ids, confusions, class_names)
        blocks[TEST] = scores[TEST].summary(f"best.pt (epoch {epoch}), scored once after training",
                                            source=test_set.source, epoch=epoch)
    if scores:
        write_slice_confusions(Path(run_dir) / runs.SLICE_CONFUSIONS, class_names, scores)
    return blocks
