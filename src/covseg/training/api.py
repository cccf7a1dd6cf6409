"""``train(config)``: the Python API behind ``covseg train`` (also used by ``covseg benchmark``).

Example::

    from covseg.training import TrainConfig, train

    config = TrainConfig.from_recipe("unet", recipe="default", epochs=5, image_size=96)
    run_dir = train(config)            # runs/unet/<timestamp>/ with best.pt, summary.json, ...
    run_dir = train(TrainConfig.load(run_dir / "config.json"), resume=run_dir)   # continue it

Under ``torchrun`` the same call trains with DistributedDataParallel; rank 0 writes the files.

Nothing here prints: progress goes to the lifecycle hooks (:mod:`covseg.core.hookspecs`; the train
command's progress bar is a listener of them) and messages to the ``covseg.training.api`` logger
(``logging``, INFO; ``logging.basicConfig(level=logging.INFO)`` shows them outside the CLI).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import random
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from covseg import runs
from covseg.checkpoint import load_checkpoint, save_checkpoint
from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.core.lifecycle import RunHooks
from covseg.core.registry import PluginInfo, create_model, get_registry
from covseg.data.dataset import SliceDataset
from covseg.devices import resolve_device
from covseg.evaluation.evaluate import SliceConfusions, evaluate_model
from covseg.files import check_creatable, json_safe, write_json
from covseg.terminal import counted
from covseg.training.batchnorm import single_value_batch_norm
from covseg.training.config import TrainConfig
from covseg.training.distributed import (
    DistributedContext,
    all_reduce_sum,
    broadcast_object,
    distributed,
    sync_buffers,
    synchronise_batch_norm,
    synchronises_batch_norm,
)
from covseg.training.ema import WeightAverage
from covseg.training.held_out import (
    VAL_SLICE_CONFUSIONS,
    VAL_SLICE_IDS,
    prepare_test_set,
    score_finished_run,
)
from covseg.training.loaders import (
    build_training_data,
    choose_split,
    create_given_run_dir,
    load_run_slices,
    normalisation_of,
)
from covseg.training.loop import StepSettings, device_defaults, recalibrate_batch_norm, train_one_epoch
from covseg.training.losses import build_loss, class_weights_from_masks
from covseg.training.optim import build_optimizer, build_scheduler
from covseg.training.run_plugins import resolve_plugins
from covseg.training.samples import EpochSamples, choose_sample_ids
from covseg.training.state import (
    capture_rng_state,
    check_resume_epochs,
    load_resume_checkpoint,
    restore_rng_state,
)

RECORD_KEYS = ("epoch", "train_loss", "lr", "images_per_s", "epoch_time_s")
"""metrics.jsonl keys that are not validation metrics; every other key of a record is one."""

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``run_dir``'s last.pt holds ``epoch`` and resumes exactly."""

    def __init__(self, run_dir: Path, epoch: int):
        super().__init__(f"training interrupted; {run_dir / runs.LAST_CHECKPOINT} holds epoch {epoch}")
        self.run_dir = run_dir
        self.epoch = epoch


def train(config: TrainConfig, *, resume: Path | None = None, run_dir: Path | None = None,
          listeners: Sequence[object] = ()) -> Path:
    """Train ``config.model`` as ``config`` says and return the run folder.

    ``resume``: a run folder to continue from its last.pt (model, optimiser, scheduler, epoch,
    RNG states, best metric), up to ``config.epochs``; pass that run's config (e.g. with more
    epochs). ``run_dir``: the folder a new run writes to (must not exist yet; default
    ``OUT/<model>/<timestamp>``). With ``config.folds`` set this is a cross-validation
    (:func:`covseg.training.cross_validation.cross_validate`; ``resume`` continues one).
    ``listeners``: objects whose ``hookimpl`` methods, named like the lifecycle hooks
    (``covseg_train_start``, ``covseg_epoch_end``, ...), follow this run only, as ``--log``
    loggers do (the train command's progress bar is one). Raises :class:`CovsegError` (one line)
    for bad input, before any data is read for an unknown model, loss or logger or an --out that
    cannot be written, and for a NaN
    loss (the last good checkpoint is kept); :class:`TrainingInterrupted` on Ctrl-C.
    """
    config.validate()
    plugins = resolve_plugins(config)
    config = dataclasses.replace(config, model=plugins.model.entry.name)  # an alias: its canonical name
    if resume is None:  # a read-only --out is refused before the data is read, not after
        target = run_dir if run_dir is not None else Path(config.out) / config.model
        check_creatable(target, f"--out {config.out}")
    if config.folds is not None and config.fold is None:
        from covseg.training.cross_validation import cross_validate

        return cross_validate(config, resume=resume, listeners=listeners)
    device = resolve_device(config.device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    listening = [*plugins.loggers, *((listener, _listener_info(listener)) for listener in listeners)]
    try:
        with distributed(device) as context:
            hooks = RunHooks(get_registry(), listening, enabled=context.is_main)
            with hooks.attached():
                return _TrainingRun(config, context, resume, hooks, run_dir).execute()
    finally:  # --deterministic applies to this run only, not to what the caller runs next
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _listener_info(listener: object) -> PluginInfo:
    """How messages name a caller's listener: its class and the package that defines it."""
    cls = type(listener)
    return PluginInfo(cls.__name__, cls.__module__, cls.__module__.split(".")[0], "")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy's global generator and Python's ``random``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def metric_values(record: dict[str, Any]) -> dict[str, Any]:
    """The validation metrics of a metrics.jsonl record."""
    return {key: value for key, value in record.items() if key not in RECORD_KEYS}


class _TrainingRun:
    """One run from set-up to summary; methods are the stages of :func:`train`."""

    def __init__(
        self, config: TrainConfig, context: DistributedContext, resume: Path | None, hooks: RunHooks,
        new_run_dir: Path | None = None,
    ):
        self.context = context
        self.hooks = hooks
        self.new_run_dir = new_run_dir
        self.resume_checkpoint = load_resume_checkpoint(resume) if resume is not None else None
        if self.resume_checkpoint is not None:  # before anything is read or written
            check_resume_epochs(resume, int(self.resume_checkpoint["epoch"]), config.epochs)
        if (self.resume_checkpoint is not None
                and get_registry().model(self.resume_checkpoint["model_name"]).name != config.model):
            raise CovsegError(
                f"--resume {resume}: the run trained {self.resume_checkpoint['model_name']}, "
                f"not {config.model}"
            )
        seed_everything(config.seed)
        if config.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
            torch.use_deterministic_algorithms(True, warn_only=True)
        if context.device.type == "cuda":
            torch.backends.cudnn.benchmark = not config.deterministic
        config = device_defaults(config, context.device)  # precision and layout for this device
        self.slices, config = self._load_data(config)
        self.config = config
        self.split = choose_split(config, self.slices, saved=resume / runs.RUN_SPLIT if resume else None)
        self.sample_ids = choose_sample_ids(self.slices, self.split.val_ids)
        self._sample_dataset: SliceDataset | None = None
        self.test_set = prepare_test_set(config, self.slices, self.split)
        self.data = build_training_data(config, self.slices, self.split, context)
        self.steps_per_epoch = len(self.data.train_loader)
        self._check_batch_norm()
        self.settings = StepSettings.for_config(config, context.device)
        model = create_model(
            config.model,
            num_classes=config.num_classes,
            in_channels=config.in_channels,
            pretrained=config.pretrained and resume is None,
            **config.model_options,
        )
        self.model = self.settings.prepare_model(synchronise_batch_norm(context, model))
        self.params_m = sum(parameter.numel() for parameter in model.parameters()) / 1e6
        self.loss_fn = self._build_loss().to(context.device)
        self.optimizer = build_optimizer(config.optimizer, self.model, config.lr, config.weight_decay,
                                         config.momentum)
        self.ema = WeightAverage(self.model, config.ema_decay) if config.ema_decay is not None else None
        self.scheduler = build_scheduler(
            config.scheduler,
            self.optimizer,
            total_steps=config.epochs * self.steps_per_epoch,
            warmup_steps=config.warmup_epochs * self.steps_per_epoch,
        )
        self.first_epoch = 1
        self.best_miou = -math.inf
        self.best_epoch = 0
        self.best_metrics: dict[str, Any] = {}
        self.elapsed_before = 0.0
        self.saved_epoch = 0
        self.run_dir = broadcast_object(context, self._prepare_run_dir(resume) if context.is_main else None)
        self.metrics_log = runs.MetricsLog(self.run_dir / runs.METRICS_LOG)
        if self.resume_checkpoint is not None:
            self._restore(self.resume_checkpoint)
        self.train_model = self._wrap_for_training(self.model)
        self.config_record = self.config.to_dict()  # what the lifecycle hooks get as ``config``

    def _info(self, message: str) -> None:
        """Log ``message`` once per run: on rank 0 only under torchrun."""
        if self.context.is_main:
            logger.info("%s", message)

    # ---- set-up ---------------------------------------------------------------------------------
    def _load_data(self, config: TrainConfig) -> tuple[CTSlices, TrainConfig]:
        """The slices, and the config with the dataset name resolved (config.json records it)."""
        embedded = config.dataset is None and config.data is None
        slices, config = load_run_slices(config)
        if embedded:
            self._info(f"No --dataset/--data given: training on the embedded {config.dataset} "
                       f"({len(slices)} synthetic CT slices).")
        return slices, config

    def _check_batch_norm(self) -> None:
        """Refuse, before the run folder exists, a batch that a batch-norm layer cannot train on."""
        config, context = self.config, self.context
        per_process = self.data.train_loader.batch_size
        synchronised = synchronises_batch_norm(context)
        seen = per_process * context.world_size if synchronised else per_process
        if seen > 1:
            return
        if config.image_size is not None:
            height = width = config.image_size
        else:
            height, width = min(image.shape[:2] for image in self.slices.images)
        def build() -> torch.nn.Module:
            return create_model(config.model, num_classes=config.num_classes, in_channels=config.in_channels,
                                **config.model_options)

        layer = single_value_batch_norm(build, seen, height, width, config.in_channels)
        if layer is None:
            return
        problem = (f"{config.model} has batch norm over a 1x1 map ({layer}), which cannot train on one "
                   "slice per step")
        if context.world_size == 1:
            raise CovsegError(f"--batch-size {config.batch_size}: {problem}; use --batch-size 2 or more")
        raise CovsegError(
            f"--batch-size {config.batch_size} over {context.world_size} processes gives each one slice per "
            f"step; {problem}, and gloo (the CPU) cannot synchronise batch norm across processes; use "
            f"--batch-size {2 * context.world_size} or more")

    def _build_loss(self) -> torch.nn.Module:
        train_ids = set(self.split.train_ids)
        train_masks = [
            mask
            for slice_id, mask in zip(self.slices.ids, self.slices.masks, strict=True)
            if slice_id in train_ids
        ]
        weights = class_weights_from_masks(train_masks, self.config.num_classes, self.config.class_weighting)
        if weights is not None:
            shown = ", ".join(
                f"{name} {weight:.2f}"
                for name, weight in zip(self.class_names, weights.tolist(), strict=True)
            )
            self._info(f"class weights ({self.config.class_weighting}): {shown}")
        return build_loss(self.config.loss, self.config.num_classes, weights)

    @property
    def eval_model(self) -> torch.nn.Module:
        """The weights that validate, go to best.pt and score the test set: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def class_names(self) -> list[str]:
        """The data's label names (config.json records them), in mask-value order."""
        return list(self.config.class_names or self.slices.labels.names)

    def _prepare_run_dir(self, resume: Path | None) -> Path:
        if resume is not None:
            run_dir = Path(resume)
        elif self.new_run_dir is not None:
            run_dir = create_given_run_dir(self.new_run_dir)
        else:
            run_dir = runs.create_run_dir(Path(self.config.out), self.config.model)
        self.config.save(run_dir / runs.RUN_CONFIG)
        if resume is None:
            self.split.save(run_dir / runs.RUN_SPLIT)
        return run_dir

    def _wrap_for_training(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.context.enabled:
            device_ids = [self.context.device] if self.context.device.type == "cuda" else None
            model = DistributedDataParallel(model, device_ids=device_ids)
        if self.config.compile:
            model = torch.compile(model)
        return model

    def _restore(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["training_state"]
        self.model.load_state_dict(checkpoint["state_dict"])
        if self.ema is not None:
            if state.get("ema") is None:
                raise CovsegError(f"--resume {self.run_dir}: its last.pt holds no weight average; "
                                  "the run was trained without --ema-decay")
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"], self.context.device)
        self.first_epoch = int(checkpoint["epoch"]) + 1
        self.saved_epoch = int(checkpoint["epoch"])
        self.best_miou, self.best_epoch = float(state["best_miou"]), int(state["best_epoch"])
        self.best_metrics = dict(state["best_metrics"])
        self.elapsed_before = float(state["elapsed_s"])
        best_path = self.run_dir / runs.BEST_CHECKPOINT
        if best_path.is_file():
            # A kill between saving best.pt and last.pt leaves a best.pt newer than last.pt; it stays
            # the best on record, so that best.pt and summary.json never disagree.
            best = load_checkpoint(best_path)
            best_miou = best["metrics"].get("miou")
            if best_miou is not None and best_miou > self.best_miou:
                self.best_miou, self.best_epoch = float(best_miou), int(best["epoch"])
                self.best_metrics = dict(best["metrics"])
        if self.context.is_main:
            self.metrics_log.load(up_to_epoch=self.saved_epoch)
        self._info(f"Resuming {self.run_dir} after epoch {self.saved_epoch} of {self.config.epochs}.")

    # ---- checkpoints ----------------------------------------------------------------------------
    def _checkpoint(self, epoch: int, metrics: dict[str, Any], training_state: bool) -> dict[str, Any]:
        checkpoint: dict[str, Any] = {
            "model_name": self.config.model,
            "model_options": dict(self.config.model_options),
            "num_classes": self.config.num_classes,
            "in_channels": self.config.in_channels,
            "class_names": self.class_names,
            "normalisation": normalisation_of(self.config).to_dict(),
            "intensity": self.config.intensity,
            "image_size": self.config.image_size,
            # last.pt resumes the trained weights; best.pt holds the weights that were validated
            "state_dict": (self.model if training_state else self.eval_model).state_dict(),
            "epoch": epoch,
            "metrics": json_safe(metrics),
            "run_dir": str(self.run_dir),
            "config": self.config.to_dict(),
        }
        if training_state:
            checkpoint["training_state"] = {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": capture_rng_state(self.context.device),
                "best_miou": self.best_miou,
                "best_epoch": self.best_epoch,
                "best_metrics": self.best_metrics,
                "elapsed_s": self.elapsed_before + (time.perf_counter() - self.started),
            }
        return checkpoint

    def _save_last(self, epoch: int, metrics: dict[str, Any]) -> None:
        if self.context.is_main:
            save_checkpoint(
                self._checkpoint(epoch, metrics, training_state=True), self.run_dir / runs.LAST_CHECKPOINT
            )
        self.saved_epoch = epoch

    # ---- the run --------------------------------------------------------------------------------
    def execute(self) -> Path:
        config = self.config
        self.started = time.perf_counter()
        options = f" ({', '.join(f'{key}={value}' for key, value in config.model_options.items())})" \
            if config.model_options else ""
        compiled = ", compiled" if config.compile else ""
        self._info(
            f"Training {config.model}{options} ({self.params_m:.1f} M parameters) on {self.context.device} "
            f"x{self.context.world_size}, {self.settings.describe()}{compiled}, recipe {config.recipe}, "
            f"loss {config.loss}: "
            f"{len(self.split.train_ids)} training / {len(self.split.val_ids)} validation slices of "
            f"{config.dataset}, batch {config.batch_size}, {counted(config.epochs, 'epoch')} "
            f"-> {self.run_dir}"
        )
        if self.resume_checkpoint is None:
            self._save_last(0, {})  # resumable from the very start, even if Ctrl-C comes in epoch 1
        self.hooks.call("covseg_train_start", run_dir=self.run_dir, config=self.config_record,
                        first_epoch=self.first_epoch, steps_per_epoch=self.steps_per_epoch)
        status, summary = "failed", None
        try:
            for epoch in range(self.first_epoch, config.epochs + 1):
                self._run_epoch(epoch)
            summary = self._summary()
            if self.context.is_main:
                summary.update(score_finished_run(self.run_dir, self.eval_model, config, self.test_set,
                                                  self.context.device, self.settings.autocast_dtype,
                                                  self.class_names, self.settings.channels_last))
                write_json(self.run_dir / runs.SUMMARY, summary)
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise TrainingInterrupted(self.run_dir, self.saved_epoch) from None
        finally:
            self.hooks.call("covseg_train_end", run_dir=self.run_dir, config=self.config_record,
                            status=status, summary=summary)
        self._info(f"Run folder: {self.run_dir}")
        return self.run_dir

    def _progress_callback(self, epoch: int) -> Any:
        """``on_progress`` for train_one_epoch when a plugin listens (reading the loss syncs the device)."""
        if not self.hooks.wanted("covseg_train_progress"):
            return None

        def on_progress(steps: int, loss_sum: torch.Tensor) -> None:
            self.hooks.call("covseg_train_progress", epoch=epoch, steps=steps,
                            steps_per_epoch=self.steps_per_epoch, loss=loss_sum.item() / steps)

        return on_progress

    def _epoch_end(self, record: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Call ``covseg_epoch_end``; the validation samples are predicted only if a plugin asks."""
        if not self.hooks.wanted("covseg_epoch_end"):
            return
        if self._sample_dataset is None:
            self._sample_dataset = SliceDataset(self.slices, self.sample_ids, normalisation_of(self.config),
                                                image_size=self.config.image_size)
        samples = EpochSamples(self.sample_ids, self._sample_dataset, self.eval_model, self.settings,
                               record["epoch"])
        try:
            self.hooks.call("covseg_epoch_end", run_dir=self.run_dir, config=self.config_record,
                            epoch=record["epoch"], record=record, metrics=metrics, best_epoch=self.best_epoch,
                            best_metrics=self.best_metrics, samples=samples)
        finally:
            samples.close()

    def _run_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        result = train_one_epoch(
            self.train_model,
            self.data.train_loader,
            self.optimizer,
            self.loss_fn,
            self.settings,
            self.scheduler,
            on_progress=self._progress_callback(epoch),
            after_step=(lambda: self.ema.update(self.model)) if self.ema is not None else None,
        )
        totals = torch.tensor(
            [result.loss_sum.item(), result.steps, result.images],
            dtype=torch.float64,
            device=self.context.device,
        )
        loss_sum, steps, images = all_reduce_sum(self.context, totals).tolist()
        train_loss = loss_sum / steps
        if not math.isfinite(train_loss):
            raise CovsegError(
                f"the training loss became {train_loss} in epoch {epoch} (--lr {self.config.lr:g}); stopped. "
                f"{self.run_dir / runs.LAST_CHECKPOINT} keeps epoch {self.saved_epoch}, the last good one; "
                f"try a lower --lr"
            )
        if self.data.calibration_loader is not None:
            recalibrate_batch_norm(self.eval_model, self.data.calibration_loader, self.settings)
        sync_buffers(self.context, self.eval_model)
        per_slice = SliceConfusions(len(self.split.val_ids), self.config.num_classes, self.context.device,
                                    self.context.rank, self.context.world_size)
        _, metrics = evaluate_model(
            self.eval_model,
            self.data.val_loader,
            self.context.device,
            self.config.num_classes,
            self.settings.autocast_dtype,
            on_batch=per_slice.add,
            channels_last=self.settings.channels_last,
            class_names=self.class_names,
        )
        val_slice_confusions = per_slice.gather()
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "lr": lr,
            "images_per_s": images / max(result.seconds, 1e-9),
            "epoch_time_s": result.seconds,
            **metrics,
        }
        miou = metrics.get("miou", math.nan)
        is_best = math.isfinite(miou) and miou > self.best_miou
        if is_best:
            self.best_miou, self.best_epoch, self.best_metrics = miou, epoch, json_safe(metrics)
        if self.context.is_main:
            self.metrics_log.append(record)
            if is_best:
                best = self._checkpoint(epoch, metrics, training_state=False)
                best[VAL_SLICE_IDS] = list(self.split.val_ids)
                best[VAL_SLICE_CONFUSIONS] = torch.from_numpy(val_slice_confusions)
                save_checkpoint(best, self.run_dir / runs.BEST_CHECKPOINT)
        if epoch % self.config.checkpoint_every == 0 or epoch == self.config.epochs:
            self._save_last(epoch, metrics)
        self._epoch_end(record, metrics)

    def _summary(self) -> dict[str, Any]:
        records = self.metrics_log.records if self.context.is_main else []
        last = records[-1] if records else {"epoch": 0}
        speeds = [record["images_per_s"] for record in records[1:] or records]
        return {
            "model": self.config.model,
            "best_epoch": self.best_epoch,
            "best_metrics": self.best_metrics,
            "final_metrics": metric_values(last) if records else {},
            "epochs_run": last["epoch"],
            "wall_time_s": self.elapsed_before + (time.perf_counter() - self.started),
            "train_images_per_s": statistics.median(speeds) if speeds else 0.0,
            "params_m": self.params_m,
            "run_dir": str(self.run_dir),
            "recipe": self.config.recipe,
            "dataset": self.config.dataset,
            "device": str(self.context.device),
            "world_size": self.context.world_size,
            "precision": self.settings.precision,
        }
