"""Data for a training run: the slices, the split and the train/validation loaders."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.augment import AugmentationConfig
from covseg.data.dataset import SliceDataset, seed_worker
from covseg.data.fingerprint import slice_hashes
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices, resolve_dataset
from covseg.data.split import Folds, Split, make_split, read_split_file
from covseg.files import describe_os_error
from covseg.terminal import counted
from covseg.training.config import TrainConfig
from covseg.training.distributed import DistributedContext
from covseg.training.sampling import ForegroundSampler, epoch_sampler
from covseg.training.settings import explicit

CALIBRATION_SLICES = 256
"""Training slices whose activations set the batch-norm statistics before validation."""


@dataclass
class TrainingData:
    """The loaders of a run, and the datasets and sampler whose epoch must be set every epoch."""

    train_dataset: SliceDataset
    train_sampler: DistributedSampler | ForegroundSampler
    train_loader: DataLoader
    val_loader: DataLoader
    calibration_loader: DataLoader | None
    """Un-augmented training slices (at most :data:`CALIBRATION_SLICES`) for precise batch norm."""

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle and new augmentations for ``epoch``, reproducible from the seed alone."""
        self.train_sampler.set_epoch(epoch)
        self.train_dataset.set_epoch(epoch)


def normalisation_of(config: TrainConfig) -> Normalisation:
    """The run's intensity normalisation (8-bit data records none: it is divided by 255)."""
    return Normalisation.from_dict(config.normalisation) if config.normalisation else Normalisation()


EMBEDDED_PHANTOM = "the embedded phantom"
"""The dataset's source in config.json when neither --dataset nor --data was given."""


def load_run_slices(config: TrainConfig) -> tuple[CTSlices, TrainConfig]:
    """The run's labelled slices, and ``config`` with the dataset name, the intensity settings and the
    classes resolved (config.json records them: ``dataset``, ``intensity``, ``normalisation``,
    ``num_classes`` and ``class_names`` from the data's label set). An explicit ``--num-classes``
    that disagrees with the data's labels is refused in one line."""
    data = Path(config.data) if config.data else None
    resolved = resolve_dataset(config.dataset, data)
    slices = load_slices(resolved, data, config.dataset_options)
    if slices.masks is None:
        raise CovsegError(f"{slices.source} has no label masks; training needs them")
    config = config.for_intensity(slices.intensity, slices.source)
    sources = dict(config.sources)
    if config.dataset is None:
        sources["dataset"] = "detected from --data" if data is not None else EMBEDDED_PHANTOM
    labels = slices.labels
    if config.num_classes != len(labels) and explicit(sources.get("num_classes")):
        raise CovsegError(f"{config.where('num_classes')} {config.num_classes}: {slices.source} is labelled "
                          f"with {len(labels)} classes ({labels.describe()}); drop it (covseg takes the "
                          "number from the data) or declare the data's labels")
    if config.class_names is not None and tuple(config.class_names) != labels.names:
        raise CovsegError(f"the run was trained on classes {', '.join(config.class_names)} but "
                          f"{slices.source} is labelled {', '.join(labels.names)}; has the data changed?")
    if not explicit(sources.get("num_classes")):
        sources["num_classes"] = "from the data's labels"
    return slices, dataclasses.replace(config, dataset=resolved, sources=sources, num_classes=len(labels),
                                       class_names=list(labels.names))


def choose_split(config: TrainConfig, slices: CTSlices, saved: Path | None = None) -> Split:
    """The run's split: ``saved`` (a resumed run's split.json), ``--split-file``, or seeded from the ids.

    A seeded split carves the test set (``--test-fraction``) out first, then the validation set.
    A fold of a cross-validation (``config.fold``) takes its split from the folds file in
    ``split_file``. Test ids never reach the training or validation ids (the split file is checked).
    """
    path = saved or (Path(config.split_file) if config.split_file else None)
    if path is None:
        split = make_split(slices.ids, val_fraction=config.val_fraction, seed=config.seed,
                           test_fraction=config.test_fraction)
    else:
        loaded = read_split_file(path)
        if isinstance(loaded, Folds):
            if config.fold is None:
                raise CovsegError(f"{config.where('split_file')} {path} holds {loaded.count} "
                                  f"cross-validation folds; add --folds {loaded.count} to train them (or "
                                  "give a run's split.json)")
            if config.folds != loaded.count:
                raise CovsegError(f"{config.where('split_file')} {path} holds {loaded.count} folds, not "
                                  f"--folds {config.folds}")
            split = loaded.split(config.fold)
        else:
            split = loaded
        split.check_ids(slices.ids, slices.source)
    if not split.train_ids or not split.val_ids:
        # With a split file the file is what to change; a seeded split is set by the fractions.
        fix = f"{config.where('split_file')} {path}" if path is not None else "--val-fraction"
        raise CovsegError(
            f"the split of {counted(len(slices), 'slice')} leaves {len(split.train_ids)} for training and "
            f"{len(split.val_ids)} for validation; both need at least one ({fix})"
        )
    # The hashes of this data, never those of the file given: they say what this run trained on.
    return dataclasses.replace(split, slice_hashes=slice_hashes(slices, split.all_ids))


def create_given_run_dir(path: Path) -> Path:
    """Create the folder a run was told to write to (a fold of a cross-validation); it must be new."""
    path = Path(path)
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        raise CovsegError(f"{path} exists already; a new run needs a new folder") from None
    except OSError as error:
        raise CovsegError(describe_os_error(error, path, "create the run folder")) from None
    return path


def per_process_batch(config: TrainConfig, context: DistributedContext, train_size: int) -> int:
    """The batch each process takes per step; one-line errors when the global batch cannot work."""
    if config.batch_size > train_size:
        raise CovsegError(
            f"--batch-size {config.batch_size} is larger than the training set "
            f"({counted(train_size, 'slice')} after the validation and test slices are held out); use "
            f"--batch-size {train_size} or less, or hold out fewer slices"
        )
    if config.batch_size % context.world_size:
        raise CovsegError(
            f"--batch-size {config.batch_size} must be divisible by the "
            f"{context.world_size} processes torchrun started"
        )
    return config.batch_size // context.world_size


def build_training_data(
    config: TrainConfig, slices: CTSlices, split: Split, context: DistributedContext
) -> TrainingData:
    """Datasets decoded once into memory, and loaders that feed the device without stalling it.

    Training: a DistributedSampler, or a ForegroundSampler with ``foreground_oversampling`` (also
    in one process, so that one process sees exactly the batches N processes see together), whole
    batches only (a last batch of one slice would break
    batch norm), pinned memory on CUDA, persistent workers. Validation: each process scores a
    disjoint slice of the ids (no padding: duplicated slices would skew the confusion matrix that
    evaluate_model sums over processes).
    """
    normalisation = normalisation_of(config)
    augmentation = AugmentationConfig.from_dict(config.augmentation)
    batch = per_process_batch(config, context, len(split.train_ids))
    train_dataset = SliceDataset(
        slices,
        split.train_ids,
        normalisation,
        image_size=config.image_size,
        augmentation=augmentation,
        seed=config.seed,
    )
    val_dataset = SliceDataset(slices, split.val_ids, normalisation, image_size=config.image_size)
    sampler = epoch_sampler(len(train_dataset), train_dataset.masks, config.foreground_oversampling,
                            context.world_size, context.rank, config.seed)
    val_shard = Subset(val_dataset, range(context.rank, len(val_dataset), context.world_size))
    workers = config.workers
    pin_memory = context.device.type == "cuda"
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        train_dataset,
        batch_size=batch,
        sampler=sampler,
        drop_last=True,
        generator=generator,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        worker_init_fn=seed_worker if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )
    # Validation and calibration slices are not augmented (a copy from memory per slice): the main
    # process loads them; persistent workers for them would only hold more processes and memory.
    val_loader = DataLoader(val_shard, batch_size=batch, shuffle=False, pin_memory=pin_memory)
    calibration_loader = None
    if config.recalibrate_bn:
        # Every process recomputes the statistics on the same slices, so all end up equal.
        calibration_ids = split.train_ids[:CALIBRATION_SLICES]
        calibration = SliceDataset(slices, calibration_ids, normalisation, image_size=config.image_size)
        calibration_loader = DataLoader(calibration, batch_size=batch, drop_last=True, pin_memory=pin_memory)
    return TrainingData(train_dataset, sampler, train_loader, val_loader, calibration_loader)
