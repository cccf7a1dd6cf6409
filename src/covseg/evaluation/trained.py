"""Load what training left behind: a run folder, a checkpoint file or an ensemble, as a ready model
with its settings.

Shared by ``covseg eval``, ``covseg export`` and the benchmarks, so that every command accepts the
same forms (``runs/unet/20250101-120000/``, ``.../best.pt``, a cross-validation folder or its
``ensemble.json``) with the same one-line errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from covseg.checkpoint import model_from_checkpoint
from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.data.dataset import SliceDataset
from covseg.data.fingerprint import slice_hashes
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.data.split import Split, read_split_file
from covseg.evaluation.ensemble import MeanSoftmaxEnsemble, check_member, read_ensemble
from covseg.evaluation.metrics import default_class_names
from covseg.files import one_line, read_json_object
from covseg.runs import (
    BEST_CHECKPOINT,
    ENSEMBLE,
    LAST_CHECKPOINT,
    RUN_CONFIG,
    RUN_SPLIT,
    SUBSETS,
    SUMMARY,
    is_cross_validation,
    read_run_config,
)


@dataclass
class TrainedModel:
    """A trained model in eval mode on its device, with the settings its input must follow."""

    model: torch.nn.Module
    model_name: str
    num_classes: int
    in_channels: int
    class_names: tuple[str, ...]
    normalisation: Normalisation
    image_size: int | None
    checkpoint_path: Path
    checkpoint: dict[str, Any]
    run_dir: Path | None
    config: dict[str, Any] | None
    members: int = 1
    """Models averaged (:class:`~covseg.evaluation.ensemble.MeanSoftmaxEnsemble`); 1 for one model."""

    @property
    def is_ensemble(self) -> bool:
        return self.members > 1 or self.checkpoint_path.name == ENSEMBLE

    @property
    def intensity(self) -> str | None:
        """What the model was trained on (``hu``/``uint8``), from its checkpoint or run config;
        None for checkpoints from before covseg recorded it."""
        recorded = self.checkpoint.get("intensity")
        if recorded is None and self.config is not None:
            recorded = self.config.get("intensity")
        return recorded if isinstance(recorded, str) else None


def resolve_checkpoint(path: Path) -> Path:
    """The file ``path`` means: ``path`` itself for a file, ``path/best.pt`` for a run folder,
    ``path/ensemble.json`` for a cross-validation folder."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CovsegError(f"{path} does not exist; give a run folder (runs/<model>/<time>/) "
                          "or a .pt checkpoint")
    if not (path / RUN_CONFIG).is_file():
        raise CovsegError(f"{path} is not a covseg run folder (it has no {RUN_CONFIG}); "
                          "give a run folder or a .pt checkpoint")
    if (path / ENSEMBLE).is_file():
        return path / ENSEMBLE
    if is_cross_validation(path):
        raise CovsegError(f"cross-validation {path} has not finished (no {ENSEMBLE} yet); continue it with "
                          f"`covseg train --resume {path}`")
    best = path / BEST_CHECKPOINT
    if not best.is_file():
        hint = f"; {path / LAST_CHECKPOINT} exists, give it to use the last epoch" \
            if (path / LAST_CHECKPOINT).is_file() else ""
        raise CovsegError(f"run {path} has no {BEST_CHECKPOINT} (no validated epoch was saved){hint}")
    return best


def run_dir_of(checkpoint_path: Path) -> Path | None:
    """The run folder a checkpoint file sits in (it has config.json beside it), else None."""
    folder = Path(checkpoint_path).parent
    return folder if (folder / RUN_CONFIG).is_file() else None


def load_trained_model(path: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """Rebuild the trained model of a run folder (its best.pt) or of a checkpoint file, on ``device``.

    The weights are read with ``weights_only=True`` (a checkpoint never runs code). The run's
    config.json is read when the checkpoint sits in a run folder. Every failure is one line naming
    the file: not a run, no best.pt, corrupt or foreign checkpoint, weights that do not fit.
    """
    checkpoint_path = resolve_checkpoint(path)
    if checkpoint_path.suffix.lower() == ".json":
        return load_ensemble(checkpoint_path, device)
    try:
        model, checkpoint = model_from_checkpoint(checkpoint_path, map_location="cpu")
    except CovsegError as error:  # e.g. a model whose plugin is not installed: say which file wants it
        if str(checkpoint_path) in str(error):
            raise
        raise CovsegError(f"{checkpoint_path}: {error}") from None
    except KeyError as error:
        raise CovsegError(f"{checkpoint_path} lacks the checkpoint field {error}") from None
    except RuntimeError as error:  # load_state_dict: missing, unexpected or mis-shaped weights
        raise CovsegError(f"{checkpoint_path}: its weights do not fit its model: {one_line(error)}") from None
    run_dir = run_dir_of(checkpoint_path)
    config = read_run_config(run_dir) if run_dir is not None else None
    num_classes = int(checkpoint["num_classes"])
    names = tuple(checkpoint.get("class_names") or default_class_names(num_classes))
    normalisation_dict = checkpoint.get("normalisation") or (config or {}).get("normalisation")
    if not normalisation_dict:
        raise CovsegError(f"{checkpoint_path} records no intensity normalisation; "
                          "it was not written by covseg train")
    try:
        normalisation = Normalisation.from_dict(normalisation_dict)
    except CovsegError as error:
        raise CovsegError(f"{checkpoint_path}: {error}") from None
    return TrainedModel(
        model=model.to(device),
        model_name=get_registry().model(str(checkpoint["model_name"])).name,
        num_classes=num_classes,
        in_channels=int(checkpoint.get("in_channels", 3)),
        class_names=names,
        normalisation=normalisation,
        image_size=checkpoint.get("image_size"),
        checkpoint_path=checkpoint_path,
        checkpoint=checkpoint,
        run_dir=run_dir,
        config=config,
    )


def evaluation_loader(slices: CTSlices, ids: list[str], normalisation: Normalisation, image_size: int | None,
                      batch_size: int, device: torch.device) -> tuple[DataLoader, bool]:
    """The slices ``ids`` as model input, un-augmented and in order, and whether they go one at a time.

    Slices of different native sizes cannot share a batch: without ``image_size`` they are
    evaluated one per batch (the second value is then True).
    """
    dataset = SliceDataset(slices, ids, normalisation, image_size=image_size)
    one_at_a_time = len({image.shape[:2] for image in dataset.images}) > 1
    loader = DataLoader(dataset, batch_size=1 if one_at_a_time else batch_size, shuffle=False,
                        pin_memory=torch.device(device).type == "cuda")
    return loader, one_at_a_time


def load_ensemble(path: Path, device: torch.device | str = "cpu") -> TrainedModel:
    """The ensemble of an ``ensemble.json``: every member loaded (one-line errors name it) and checked
    to share the file's settings, averaged by :class:`MeanSoftmaxEnsemble`."""
    path = Path(path)
    members, settings = read_ensemble(path)
    loaded = []
    for member in members:
        trained = load_trained_model(member, device)
        if trained.is_ensemble:
            raise CovsegError(f"{path}: member {member} is an ensemble itself")
        check_member(path, member, trained.checkpoint, settings)
        loaded.append(trained)
    first = loaded[0]
    folder = path.parent
    config = read_run_config(folder) if (folder / RUN_CONFIG).is_file() else None
    summary = read_json_object(folder / SUMMARY) if (folder / SUMMARY).is_file() else {}
    validation = summary.get("validation") if isinstance(summary.get("validation"), dict) else {}
    metrics = validation.get("metrics") if isinstance(validation.get("metrics"), dict) else {}
    return TrainedModel(
        model=MeanSoftmaxEnsemble([trained.model for trained in loaded]).eval(),
        model_name=first.model_name,
        num_classes=first.num_classes,
        in_channels=first.in_channels,
        class_names=first.class_names,
        normalisation=first.normalisation,
        image_size=first.image_size,
        checkpoint_path=path,
        checkpoint={"epoch": None, "metrics": metrics, "members": [str(member) for member in members],
                    "intensity": first.intensity},
        run_dir=folder if config is not None else None,
        config=config,
        members=len(loaded),
    )


@dataclass
class EvaluationData:
    """The labelled slices to score: ``ids`` (in order) out of ``slices``, and where they came from.

    ``note``: how the slices were chosen, when that is not plain (the run's split found by id in
    other data); ``warning``: one line when slices the model trained on are scored, whichever way
    they were chosen (:func:`training_overlap_warning`).
    """

    slices: CTSlices
    ids: list[str]
    description: str
    split: str
    note: str | None = None
    warning: str | None = None


TEST_DATA = "test set (--test-data)"
"""The split label of a run's separate test data (``covseg train --test-data``)."""

RESOLVED_SUFFIX = "_resolved"
"""config.json keeps each data path as typed (``data``) and absolute (``data_resolved``)."""


def recorded_data_path(config: Mapping[str, Any], key: str, run_dir: Path) -> Path | None:
    """The data path a run recorded under ``key`` (``data`` or ``test_data``), absolute, or None.

    The absolute form (``<key>_resolved``, written at training time) is used when present, so the
    run evaluates from any working folder; older runs hold only the typed path, read as before.
    Raises :class:`CovsegError` when the recorded path is gone (a moved run, moved data): it names
    the path and says to pass ``--data``.
    """
    typed = config.get(key)
    if not typed:
        return None
    path = Path(config.get(key + RESOLVED_SUFFIX) or typed)
    if not path.exists():
        option = "--data" if key == "data" else "--dataset/--data"
        raise CovsegError(f"run {run_dir} was trained on {typed} ({path}), which does not exist here; "
                          f"pass {option} with the data's new location")
    return path


def _own_split(trained: TrainedModel) -> Split | None:
    if trained.run_dir is None or not (trained.run_dir / RUN_SPLIT).is_file():
        return None
    split = read_split_file(trained.run_dir / RUN_SPLIT)
    return split if isinstance(split, Split) else None


def training_slices(trained: TrainedModel) -> tuple[set[str], set[str]]:
    """The slices ``trained``'s weights were fitted on, from its run's split.json: (their ids, their
    content hashes). A run's ``train_ids``; for an ensemble, every non-test id (each id trained all
    members but one). The hashes are empty for split files written before covseg recorded them;
    both are empty when no split is recorded (a loose checkpoint)."""
    if trained.run_dir is None or not (trained.run_dir / RUN_SPLIT).is_file():
        return set(), set()
    split = read_split_file(trained.run_dir / RUN_SPLIT)
    if isinstance(split, Split):
        ids = set(split.train_ids)
    else:
        ids = set(split.pool) if trained.is_ensemble else set()
    return ids, {split.slice_hashes[name] for name in ids if name in split.slice_hashes}


def training_overlap_warning(trained: TrainedModel, slices: CTSlices, ids: list[str]) -> str | None:
    """One line when some of ``ids`` (the slices of ``slices`` to score) trained ``trained``, else None:
    such scores are optimistic, not validation scores.

    A slice counts when its id is a training id, whatever data it is read from, or when its pixels
    are those of a training slice (the same :func:`covseg.data.fingerprint.slice_hash`: a renamed
    copy of the training data). The line says which: ``same ids``, ``same pixels`` or both counts.
    """
    trained_ids, trained_hashes = training_slices(trained)
    by_id = set(ids) & trained_ids
    by_pixels: set[str] = set()
    if trained_hashes:  # older split files record no hashes: the id rule alone
        others = [name for name in ids if name not in by_id]
        hashes = slice_hashes(slices, others)
        by_pixels = {name for name, digest in hashes.items() if digest in trained_hashes}
    if not by_id and not by_pixels:
        return None
    if by_id and by_pixels:
        how = f"{len(by_id)} by the same ids, {len(by_pixels)} by the same pixels under other ids"
    else:
        how = "same ids" if by_id else "same pixels under other ids"
    return (f"{len(by_id) + len(by_pixels)} of the {len(ids)} evaluated slices were used for training "
            f"({how}): the scores are optimistic, not a validation score")


def _by_id_in_other_data(trained: TrainedModel, slices: CTSlices, description: str,
                         split: str | None) -> EvaluationData:
    """Data given with --dataset/--data for a run: the run's own split by id where the ids are there.

    ``split`` None: the run's validation ids (an ensemble's: its test ids) when all are in the data,
    else every slice. ``val``/``train``/``test``: those ids, each required. ``all``: every slice.
    """
    run_split = _own_split(trained)
    ids = list(slices.ids)
    if run_split is None:
        if split not in (None, "all"):
            raise CovsegError(f"--split {split}: {trained.checkpoint_path} has no run split to select by "
                              "id; evaluate all slices of --dataset/--data (drop --split)")
        return _checked(EvaluationData(slices, ids, description, "all slices"))
    wanted = split or ("test" if trained.is_ensemble else "val")
    chosen = {"val": run_split.val_ids, "train": run_split.train_ids, "test": run_split.test_ids}.get(wanted)
    present = set(ids)
    if chosen and set(chosen) <= present:
        label = {"val": "validation split", "train": "training split", "test": "test split"}[wanted]
        selection = EvaluationData(slices, list(chosen), description, label,
                                   note=f"evaluating the run's {label} by slice id in {description} "
                                        f"({len(chosen)} of its {len(ids)} slices)")
    elif split not in (None, "all"):
        missing = sorted(set(chosen or ()) - present)
        raise CovsegError(f"--split {split}: {len(missing)} of the run's {split} slice ids are not in "
                          f"{description} (e.g. {missing[:1] or ['none recorded']}); use --split all")
    else:
        selection = EvaluationData(slices, ids, description, "all slices")
    return _checked(selection)


def load_evaluation_data(
    trained: TrainedModel,
    dataset: str | None = None,
    data: Path | None = None,
    options: Mapping[str, str] | None = None,
    split: str | None = None,
) -> EvaluationData:
    """The slices to evaluate ``trained`` on.

    With ``dataset`` or ``data``: that whole data set (``split`` must be None or ``"all"``).
    Otherwise the run's own data (its config.json's dataset, data and dataset_options, ``options``
    on top) restricted to ``split``: ``"val"`` (default, the ids of the run's split.json),
    ``"train"``, ``"test"`` (the held-out test set: split.json's ``test_ids``, or the run's
    ``--test-data``) or ``"all"``. An ensemble's members trained on every non-test slice, so it
    takes ``"test"`` (its default) or ``"all"`` only. The result's ``warning`` says how many of
    the chosen slices trained the model (:func:`training_overlap_warning`), whichever way they
    were chosen. Raises :class:`CovsegError` for a ``split`` that is none of
    :data:`covseg.runs.SUBSETS` (a typo must not score other slices).
    """
    if split is not None and split not in SUBSETS:
        raise CovsegError(f"--split {split}: expected one of {', '.join(SUBSETS)}")
    selection = _select(trained, dataset, data, dict(options or {}), split)
    if selection.split != TEST_DATA:  # other data: its ids are not the training data's
        selection.warning = training_overlap_warning(trained, selection.slices, selection.ids)
    return selection


def _select(trained: TrainedModel, dataset: str | None, data: Path | None, options: dict[str, str],
            split: str | None) -> EvaluationData:
    if dataset is not None or data is not None:
        slices = load_slices(dataset, data, options)
        return _by_id_in_other_data(trained, slices, _describe(dataset, slices), split)
    if trained.run_dir is None or trained.config is None:
        raise CovsegError(f"{trained.checkpoint_path} is not inside a run folder (no {RUN_CONFIG} "
                          "beside it); give --dataset or --data to say what to evaluate on")
    config = trained.config
    if trained.is_ensemble:
        split = split or "test"
        if split in ("val", "train"):
            raise CovsegError(f"--split {split}: the members of ensemble {trained.checkpoint_path} "
                              "trained on every slice outside the test set (each validated on its own "
                              "fold); use --split test, or --dataset/--data")
    split = split or "val"
    if split == "test" and (config.get("test_data") or config.get("test_dataset")):
        test_data = recorded_data_path(config, "test_data", trained.run_dir)
        slices = load_slices(config.get("test_dataset"), test_data,
                             {**(config.get("test_dataset_options") or {}), **options})
        description = _describe(config.get("test_dataset"), slices)
        return _checked(EvaluationData(slices, list(slices.ids), description, TEST_DATA))
    run_data = recorded_data_path(config, "data", trained.run_dir)
    run_dataset = config.get("dataset")
    slices = load_slices(run_dataset, run_data, {**(config.get("dataset_options") or {}), **options})
    description = _describe(run_dataset, slices)
    if split == "all":
        return _checked(EvaluationData(slices, list(slices.ids), description, "all slices"))
    split_path = trained.run_dir / RUN_SPLIT
    if not split_path.is_file():
        raise CovsegError(f"run {trained.run_dir} has no {RUN_SPLIT}; use --split all or --dataset/--data")
    run_split = read_split_file(split_path)
    try:
        run_split.check_ids(slices.ids, description)
    except CovsegError as error:
        raise CovsegError(f"{split_path}: {error}; has the data changed since training?") from None
    if split == "test":
        if not run_split.test_ids:
            raise CovsegError(f"run {trained.run_dir} has no test set (it was trained without "
                              "--test-fraction or --test-data); use --split val, or --dataset/--data")
        return _checked(EvaluationData(slices, list(run_split.test_ids), description, "test split"))
    if not isinstance(run_split, Split):
        raise CovsegError(f"{split_path} holds cross-validation folds; evaluate a fold's run folder or use "
                          "--split test")
    ids = run_split.val_ids if split == "val" else run_split.train_ids
    label = "validation split" if split == "val" else "training split"
    return _checked(EvaluationData(slices, list(ids), description, label))


def _describe(dataset: str | None, slices: CTSlices) -> str:
    if not dataset or slices.source.startswith(dataset):
        return slices.source
    return f"{dataset} ({slices.source})"


def _checked(selection: EvaluationData) -> EvaluationData:
    if not selection.ids:
        raise CovsegError(f"{selection.description}: the {selection.split} hold(s) no slices to evaluate")
    return selection
