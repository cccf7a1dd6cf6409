"""K-fold cross-validation and the fold ensemble: ``covseg train MODEL --folds K`` (nnU-Net's protocol).

The test set (``--test-fraction`` or ``--test-data``) is set aside first and stays out of every
fold. The other slices are dealt into K disjoint folds (seeded, :func:`covseg.data.split.make_folds`);
fold k's model trains on the other K-1 folds and chooses its epoch on fold k. The folder::

    runs/<model>/<timestamp>/     config.json (folds K), split.json (the folds and the test ids)
        fold-0/ .. fold-<K-1>/    ordinary run folders (config.json with ``fold``, best.pt, summary.json)
        ensemble.json             the K best.pt files, averaged by mean softmax
        slice_confusions.json     out-of-fold and ensemble-test confusions, one per slice
        summary.json              the cross-validated figures

The cross-validated ("out-of-fold") metrics are computed on the union of the folds' validation
predictions: every non-test slice scored once, by the model that did not train on it, summed into
one confusion matrix (nnU-Net reports the same; Isensee et al. 2021, Nature Methods 18:203). Each
fold still chose its epoch on its own fold, so they carry the same selection optimism as a single
run's validation figures, over K times more slices. The ensemble's test metrics are the honest
figure. Rerunning (``covseg train --resume FOLDER``) continues a stopped cross-validation: finished
folds are kept, a stopped fold resumes from its last.pt.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covseg import runs
from covseg.checkpoint import load_checkpoint
from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.fingerprint import slice_hashes
from covseg.data.split import Folds, Split, carve_test, make_folds, read_split_file
from covseg.devices import resolve_device
from covseg.evaluation import bootstrap
from covseg.evaluation.ensemble import write_ensemble
from covseg.evaluation.evaluate import evaluate_slices
from covseg.evaluation.scores import TEST, VALIDATION, Score, read_slice_confusions, write_slice_confusions
from covseg.evaluation.trained import evaluation_loader, load_ensemble
from covseg.files import write_json
from covseg.training.api import TrainingInterrupted, train
from covseg.training.config import TrainConfig
from covseg.training.held_out import TestSet, prepare_test_set
from covseg.training.loaders import load_run_slices
from covseg.training.loop import StepSettings, device_defaults
from covseg.training.state import check_resume_epochs, epochs_trained

logger = logging.getLogger(__name__)

FRESH_FOLD_FILES = {runs.RUN_CONFIG, runs.RUN_SPLIT, runs.METRICS_LOG}
"""What a fold folder may hold before its first checkpoint (a fold stopped that early starts again)."""


class CrossValidationInterrupted(TrainingInterrupted):
    """Ctrl-C in fold ``fold``: ``run_dir`` (the cross-validation folder) resumes where it stopped."""

    def __init__(self, run_dir: Path, fold: int, epoch: int):
        KeyboardInterrupt.__init__(self, f"cross-validation interrupted in fold {fold} (epoch {epoch} saved)")
        self.run_dir, self.fold, self.epoch = run_dir, fold, epoch


def cross_validate(
    config: TrainConfig, *, resume: Path | None = None, listeners: Sequence[object] = ()
) -> Path:
    """Train ``config.folds`` fold models, score them out of fold, write the ensemble; returns the folder.

    ``resume``: a cross-validation folder to continue (``config`` is its config.json with the
    resumable settings changed). ``listeners`` follow every fold run (see :func:`train`). Raises
    :class:`CovsegError` for bad input before any folder is made, :class:`CrossValidationInterrupted`
    on Ctrl-C.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise CovsegError("--folds trains its folds one after the other in one process; run it without "
                          "torchrun (or give each fold the GPUs through `covseg benchmark --jobs`)")
    config = device_defaults(config, resolve_device(config.device))
    embedded = config.dataset is None and config.data is None
    slices, config = load_run_slices(config)
    if embedded:
        logger.info("No --dataset/--data given: cross-validating on the embedded %s "
                    "(%d synthetic CT slices).", config.dataset, len(slices))
    if resume is None:
        folds = _make_folds(config, slices)
        _check_fold_sizes(config, folds)
        folds = dataclasses.replace(folds, slice_hashes=slice_hashes(slices, [*folds.pool, *folds.test_ids]))
    else:
        folds = _read_folds(Path(resume) / runs.RUN_SPLIT, config)
        for fold in range(folds.count):  # no fold may have trained more epochs than --epochs
            trained = epochs_trained(runs.fold_dir(Path(resume), fold))
            if trained is not None:
                check_resume_epochs(Path(resume), trained, config.epochs)
        folds.check_ids(slices.ids, slices.source)
    # Bad test data fails here, before a fold trains.
    test_set = prepare_test_set(config, slices, Split(train_ids=folds.pool, val_ids=[], seed=folds.seed,
                                                      val_fraction=None, test_ids=folds.test_ids))
    cv_dir = Path(resume) if resume is not None else runs.create_run_dir(Path(config.out), config.model)
    config.save(cv_dir / runs.RUN_CONFIG)
    if resume is None:
        folds.save(cv_dir / runs.RUN_SPLIT)
    held_out = f", {len(folds.test_ids)} test slices held out of every fold" if folds.test_ids else ""
    logger.info("Cross-validation of %s: %s%s -> %s", config.model, folds.describe(), held_out, cv_dir)
    started = time.perf_counter()
    for fold in range(folds.count):
        _train_fold(config, cv_dir, fold, listeners)
    return _finish(config, cv_dir, folds, test_set, time.perf_counter() - started)


def _make_folds(config: TrainConfig, slices: CTSlices) -> Folds:
    """The folds of a new cross-validation: from ``--split-file`` (its folds, or folds of its
    training and validation ids with its test ids kept) or seeded from the ids."""
    if config.split_file is not None:
        given = read_split_file(Path(config.split_file))
        given.check_ids(slices.ids, slices.source)
        if isinstance(given, Folds):
            if given.count != config.folds:
                raise CovsegError(f"{config.where('split_file')} {config.split_file} holds {given.count} "
                                  f"folds, not --folds {config.folds}")
            return given
        return make_folds([*given.train_ids, *given.val_ids], config.folds, config.seed, given.test_ids,
                          given.test_fraction)
    pool, test_ids = carve_test(slices.ids, config.test_fraction, config.seed)
    return make_folds(pool, config.folds, config.seed, test_ids, config.test_fraction)


def _read_folds(path: Path, config: TrainConfig) -> Folds:
    folds = read_split_file(path)
    if not isinstance(folds, Folds) or folds.count != config.folds:
        raise CovsegError(f"{path} does not hold the {config.folds} folds of this cross-validation")
    return folds


def _check_fold_sizes(config: TrainConfig, folds: Folds) -> None:
    """Every fold's training part must fill one batch: refused before any folder is made."""
    smallest = min(len(folds.pool) - len(fold) for fold in folds.folds)
    if config.batch_size > smallest:
        raise CovsegError(f"--batch-size {config.batch_size} is larger than the smallest fold's training set "
                          f"({smallest} slices); use --batch-size {smallest} or less, or fewer --folds")


def fold_config(config: TrainConfig, cv_dir: Path, fold: int) -> TrainConfig:
    """The config of fold ``fold``: the cross-validation's, with the folds file as its split."""
    sources = {**config.sources, "fold": "the cross-validation",
               "split_file": "the cross-validation's folds",
               "val_fraction": "not used: each fold in turn is the validation set"}
    if config.test_fraction is not None:
        sources["test_fraction"] = "not used: the cross-validation's split fixes the test slices"
    else:
        sources.pop("test_fraction", None)
    return dataclasses.replace(config, fold=fold, split_file=str(cv_dir / runs.RUN_SPLIT), val_fraction=None,
                               test_fraction=None, sources=sources)


def _train_fold(config: TrainConfig, cv_dir: Path, fold: int, listeners: Sequence[object]) -> None:
    run_dir = runs.fold_dir(cv_dir, fold)
    if (run_dir / runs.SUMMARY).is_file():
        logger.info("Fold %d: finished already (%s).", fold, run_dir)
        return
    logger.info("Fold %d of %d", fold, config.folds)
    try:
        if (run_dir / runs.LAST_CHECKPOINT).is_file():
            train(_resumed_fold_config(config, run_dir), resume=run_dir, listeners=listeners)
        else:
            _clear_unstarted(run_dir)
            train(fold_config(config, cv_dir, fold), run_dir=run_dir, listeners=listeners)
    except TrainingInterrupted as interrupted:
        raise CrossValidationInterrupted(cv_dir, fold, interrupted.epoch) from None


def _resumed_fold_config(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """A stopped fold's own config with the cross-validation's resumable settings (e.g. ``epochs``)."""
    recorded = TrainConfig.load(run_dir / runs.RUN_CONFIG)
    settings = TrainConfig.settings()
    changes = {name: getattr(config, name) for name, info in settings.items()
               if info.resumable and getattr(config, name) != getattr(recorded, name)}
    labels = {name: settings[name].option or name for name in changes}
    return recorded.resumed_with(changes, labels)


def _clear_unstarted(run_dir: Path) -> None:
    """Remove a fold folder that stopped before its first checkpoint, so that it starts afresh."""
    if not run_dir.exists():
        return
    leftovers = {path.name for path in run_dir.iterdir()}
    if not leftovers <= FRESH_FOLD_FILES:
        raise CovsegError(f"{run_dir} holds files of no fold run that could be resumed "
                          f"({', '.join(sorted(leftovers - FRESH_FOLD_FILES))}); move it away to retrain it")
    shutil.rmtree(run_dir)


def _finish(
    config: TrainConfig, cv_dir: Path, folds: Folds, test_set: TestSet | None, seconds: float
) -> Path:
    """Out-of-fold score, ensemble.json, the ensemble's test score and the summary."""
    fold_dirs = [runs.fold_dir(cv_dir, fold) for fold in range(folds.count)]
    summaries = [runs.read_summary(run_dir) for run_dir in fold_dirs]
    out_of_fold = out_of_fold_score(cv_dir, folds, config.class_names)
    members = [run_dir / runs.BEST_CHECKPOINT for run_dir in fold_dirs]
    missing = [member for member in members if not member.is_file()]
    if missing:
        raise CovsegError(f"{missing[0]} is missing: that fold saved no validated epoch, so there is no "
                          "ensemble")
    checkpoints = [_settings_of(member) for member in members]
    write_ensemble(cv_dir / runs.ENSEMBLE, members, checkpoints)
    scores = {VALIDATION: out_of_fold}
    if test_set is not None:
        device = resolve_device(config.device)
        ensemble = load_ensemble(cv_dir / runs.ENSEMBLE, device)
        loader, _ = evaluation_loader(test_set.slices, test_set.ids, ensemble.normalisation,
                                      config.image_size, config.batch_size, device)
        settings = StepSettings.for_config(config, device)
        model = settings.prepare_model(ensemble.model)
        confusions = evaluate_slices(model, loader, device, config.num_classes, settings.autocast_dtype,
                                     channels_last=settings.channels_last)
        scores[TEST] = Score.of(test_set.ids, confusions, checkpoints[0]["class_names"])
    class_names = list(checkpoints[0]["class_names"])
    write_slice_confusions(cv_dir / runs.SLICE_CONFUSIONS, class_names, scores)
    source = test_set.source if test_set else None
    summary = _summary(config, cv_dir, folds, summaries, scores, source, seconds)
    write_json(cv_dir / runs.SUMMARY, summary)
    logger.info("Cross-validation folder: %s", cv_dir)
    return cv_dir


def _settings_of(member: Path) -> dict[str, Any]:
    checkpoint = load_checkpoint(member)
    checkpoint.pop("state_dict", None)
    return checkpoint


def out_of_fold_score(cv_dir: Path, folds: Folds, class_names: Sequence[str] | None = None) -> Score:
    """Every non-test slice's confusion from the fold that validated on it, as one score (by id);
    per-class metrics named by ``class_names`` (the data's labels)."""
    ids: list[str] = []
    matrices: list[np.ndarray] = []
    for fold, expected in enumerate(folds.folds):
        run_dir = runs.fold_dir(cv_dir, fold)
        path = run_dir / runs.SLICE_CONFUSIONS
        if not path.is_file():
            raise CovsegError(f"{path} is missing: fold {fold} kept no per-slice validation confusions")
        sets = read_slice_confusions(path)
        if VALIDATION not in sets or sorted(sets[VALIDATION][0]) != sorted(expected):
            raise CovsegError(f"{path}: its validation slices are not fold {fold} of "
                              f"{cv_dir / runs.RUN_SPLIT}")
        fold_ids, confusions = sets[VALIDATION]
        ids += fold_ids
        matrices.append(confusions)
    stacked = np.concatenate(matrices)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    return Score.of([ids[index] for index in order], stacked[order], class_names)


def _summary(config: TrainConfig, cv_dir: Path, folds: Folds, summaries: list[dict[str, Any]],
             scores: dict[str, Score], test_source: str | None, seconds: float) -> dict[str, Any]:
    first = summaries[0]
    best_epochs = [summary.get("best_epoch") for summary in summaries]
    speeds = [summary.get("train_images_per_s") for summary in summaries if summary.get("train_images_per_s")]
    validation = scores[VALIDATION].summary(
        f"out of fold: each of the {len(scores[VALIDATION].ids)} non-test slices scored by the fold model "
        "that did not train on it (each fold chose its epoch on its own fold)")
    test = scores.get(TEST)
    return {
        "model": config.model,
        "kind": "cross-validation",
        "folds": folds.count,
        "fold_runs": [runs.fold_dir(cv_dir, fold).name for fold in range(folds.count)],
        "best_epoch": statistics.mean(best_epochs) if all(isinstance(e, int) for e in best_epochs) else None,
        "best_epochs": best_epochs,
        "best_metrics": dict(scores[VALIDATION].metrics),
        "final_metrics": {},
        "epochs_run": first.get("epochs_run"),
        "wall_time_s": sum(float(summary.get("wall_time_s", 0.0)) for summary in summaries),
        "cross_validation_time_s": seconds,
        "train_images_per_s": statistics.median(speeds) if speeds else 0.0,
        "params_m": first.get("params_m"),
        "run_dir": str(cv_dir),
        "recipe": config.recipe,
        "dataset": config.dataset,
        "device": first.get("device"),
        "world_size": first.get("world_size"),
        "precision": first.get("precision"),
        VALIDATION: validation,
        TEST: test.summary(f"ensemble of the {folds.count} fold models (mean softmax), scored once",
                           source=test_source, members=folds.count) if test is not None else None,
        "members_test": _members_test(summaries),
        "bootstrap": bootstrap.settings(),
    }


def _members_test(summaries: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Each fold model's own test metrics (their mean beside the ensemble's shows what averaging adds)."""
    tests = [summary.get(TEST) for summary in summaries]
    if not all(isinstance(test, dict) for test in tests):
        return None
    keys = tests[0]["metrics"].keys()
    return {"mean": {key: _mean([test["metrics"].get(key) for test in tests]) for key in keys},
            "per_fold": [test["metrics"] for test in tests]}


def _mean(values: list[Any]) -> float | None:
    finite = [float(value) for value in values if isinstance(value, int | float) and np.isfinite(value)]
    return statistics.mean(finite) if finite else None

