"""Hook specifications: the plugin author's manual.

A covseg plugin is a Python module (or object) with functions named like the hooks below,
decorated with :data:`covseg.plugins.hookimpl`, and announced through the ``covseg`` entry-point
group of its package::

    # pyproject.toml of your package
    [project.entry-points.covseg]
    unet-lite = "covseg_unet_lite.plugin"

After ``pip install``, covseg finds it: ``covseg plugins`` lists it and ``covseg models`` lists its
models. covseg's own seven models, datasets, metrics, losses and TensorBoard logger are registered
in exactly this way.

Import only :mod:`covseg.plugins` from covseg (the public plugin surface; the rest is internal),
and nothing heavy at import time: covseg imports every plugin module at every start, also for
``covseg models`` and ``covseg plugins``, which import no torch. Import torch, timm, torchvision,
:mod:`covseg.plugins.layers` and your network code inside the factory or loader.

Two sorts of hooks:

- **entry hooks** (``covseg_models``, ``covseg_datasets``, ``covseg_metrics``, ``covseg_losses``,
  ``covseg_loggers``) each return a list of entries, named things users pick by name;
- **lifecycle hooks** (``covseg_train_start``, ``covseg_train_progress``, ``covseg_epoch_end``,
  ``covseg_train_end``) are called on every plugin that implements them, during every training run,
  with plain keyword arguments; a hook implementation may take any subset of them (pluggy passes
  only those it names), so new arguments never break a plugin.

A plugin implements only the hooks it needs. A plugin cannot take covseg down: a failing import
(``sys.exit`` included), a hook that raises or returns something else than entries, a factory,
loader, loss or logger that raises, are each reported in one line naming the package, and the other
plugins keep working; a lifecycle hook that raises mid-run is reported once and training goes on. A
name (or model alias) offered by two plugins is refused when used, naming both packages;
``COVSEG_DISABLE_PLUGINS=plugin,...`` disables one. ``COVSEG_TRACE_PLUGINS=1`` logs every hook
call.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy

from covseg.core.entries import (
    DatasetEntry,
    LoggerEntry,
    LossEntry,
    MetricEntry,
    ModelEntry,
    ValidationSamples,
)

PROJECT_NAME = "covseg"
ENTRY_POINT_GROUP = "covseg"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def covseg_models() -> list[ModelEntry]:
    """Return the segmentation models this plugin offers.

    Each :class:`~covseg.plugins.ModelEntry` carries a ``name`` (lower case, dashes, what users
    type: ``covseg train NAME``), a ``factory(num_classes=4, in_channels=3, pretrained=False)``
    that returns a ``torch.nn.Module``, a one-line ``description``, a ``family`` and optional
    ``aliases`` (older names that keep working). Spell each entry out, one ``ModelEntry`` per
    name, so that ``grep NAME`` finds it.

    The factory's further keyword parameters, with defaults, are the model's **options**:
    ``covseg train NAME --model-option width=32`` calls ``factory(..., width=32)`` (values read as
    JSON scalars where they parse: ``32``, ``0.5``, ``true``, ``null``; else text), checkpoints
    record them and ``covseg eval``/``export`` rebuild the same network. An option the factory
    does not take is refused in one line listing those it takes (read from its signature; a
    factory with ``**kwargs`` gets every option). Check the values and raise
    :class:`~covseg.plugins.CovsegError` (one line) for a bad one.

    The module must take (N, in_channels, H, W) for any H, W >= 32, also sizes not divisible by 32,
    and return logits (N, num_classes, H, W) as a plain tensor (not a dict); covseg checks the
    first forward. Build it in the factory: covseg calls this hook at every start, so the hook and
    the plugin module must import nothing heavy (no torch, timm or torchvision at import time).
    Example::

        from covseg.plugins import CovsegError, ModelEntry, hookimpl

        def build_tiny(num_classes=4, in_channels=3, pretrained=False):
            import torch  # here, not at the top: listing models must not import torch

            if pretrained:
                raise CovsegError("tiny-net has no pretrained weights")
            return torch.nn.Conv2d(in_channels, num_classes, 3, padding=1)

        @hookimpl
        def covseg_models():
            return [ModelEntry("tiny-net", build_tiny, "One 3x3 convolution.", family="toy")]

    With an option, ``covseg train tiny-net --model-option kernel=5``::

        def build_tiny(num_classes=4, in_channels=3, pretrained=False, kernel=3):
            import torch

            if kernel not in (1, 3, 5, 7):
                raise CovsegError(f"tiny-net: kernel must be 1, 3, 5 or 7, not {kernel!r}")
            return torch.nn.Conv2d(in_channels, num_classes, kernel, padding=kernel // 2)
    """


@hookspec
def covseg_datasets() -> list[DatasetEntry]:
    """Return the data sets this plugin can read.

    Each :class:`~covseg.plugins.DatasetEntry` carries a ``name`` (``--dataset NAME``), a
    ``load(path, options)`` function, a one-line ``description`` and ``needs_path`` (False for
    generated data). ``load`` returns :class:`~covseg.plugins.CTSlices`: 2-D slices in memory, in
    Hounsfield units (``intensity="hu"``) or 8-bit (``intensity="uint8"``), with uint8 label masks
    0 background, 1 ground-glass, 2 consolidation, 3 effusion. covseg does the rest (intensity
    window, resizing, augmentation, split). Bad input raises
    :class:`~covseg.plugins.CovsegError` with one line naming the file; any other exception is
    reported as a fault of the plugin, naming the dataset and package. ``covseg.plugins`` has the
    readers (``read_image``, ``read_ct_volume``, ...) and option helpers (``check_known``,
    ``int_option``). Import nothing heavy at import time. Example::

        @hookimpl
        def covseg_datasets():
            return [DatasetEntry("npz-slices", load_npz, "Slices in one .npz file.")]

        def load_npz(path, options):
            arrays = np.load(path)
            return CTSlices(ids=[...], images=list(arrays["images"]),
                            masks=list(arrays["masks"]), intensity="hu", source=str(path))
    """


@hookspec
def covseg_metrics() -> list[MetricEntry]:
    """Return validation metrics computed from the confusion matrix.

    Each :class:`~covseg.plugins.MetricEntry` carries a ``name``, a ``compute(confusion)`` function,
    a one-line ``description`` and ``higher_is_better``. ``confusion`` is a (C, C) integer array
    summed over the whole validation set, rows the true class, columns the prediction; ``compute``
    returns a float, or a mapping of floats (reported as ``name/key``). Import nothing heavy at
    import time. Example::

        @hookimpl
        def covseg_metrics():
            return [MetricEntry("recall-effusion", effusion_recall, "Recall of class 3.")]

        def effusion_recall(confusion):
            return float(confusion[3, 3] / max(confusion[3].sum(), 1))
    """


@hookspec
def covseg_losses() -> list[LossEntry]:
    """Return the training losses this plugin offers (``covseg train --loss NAME``).

    Each :class:`~covseg.plugins.LossEntry` carries a ``name``, a ``build(num_classes,
    class_weights)`` function returning a ``torch.nn.Module`` and a one-line ``description``. The
    module takes logits (N, C, H, W) and target labels (N, H, W) int64 and returns the mean loss as
    a 0-d tensor; covseg checks its first result. ``class_weights`` is None or a float32 tensor (C,)
    from ``--class-weighting``. covseg's ``cross-entropy`` and ``cross-entropy+dice`` are entries of
    its built-in ``losses`` plugin. Import torch inside ``build``. Example::

        @hookimpl
        def covseg_losses():
            return [LossEntry("focal", build_focal, "Focal loss (Lin 2017), gamma 2, class-weighted.")]

        def build_focal(num_classes, class_weights):
            import torch

            class Focal(torch.nn.Module):
                def forward(self, logits, target):
                    log_p = torch.nn.functional.log_softmax(logits.float(), dim=1)
                    ce = torch.nn.functional.nll_loss(log_p, target, weight=class_weights, reduction="none")
                    p_true = log_p.gather(1, target[:, None])[:, 0].exp()
                    return ((1 - p_true) ** 2 * ce).mean()

            return Focal()
    """


@hookspec
def covseg_loggers() -> list[LoggerEntry]:
    """Return the experiment loggers this plugin offers (``covseg train --log NAME``).

    Each :class:`~covseg.plugins.LoggerEntry` carries a ``name``, a ``create()`` function and a
    one-line ``description``. ``create`` runs when a run starts, before any data is read; it
    imports the logger's package (raising :class:`~covseg.plugins.CovsegError` with one line that
    names the package to install when it is missing) and returns an object whose methods implement
    the lifecycle hooks below. covseg registers that object for the run, so it receives the
    lifecycle calls of that run only. covseg's TensorBoard logger is one (``--log tensorboard``,
    ``covseg_builtin/loggers/tensorboard.py``). Example, an MLflow logger::

        @hookimpl
        def covseg_loggers():
            return [LoggerEntry("mlflow", create_mlflow, "MLflow run: parameters, metrics, overlays.")]

        def create_mlflow():
            try:
                import mlflow
            except ImportError:
                raise CovsegError("--log mlflow needs the mlflow package: pip install mlflow") from None
            return MlflowLogger(mlflow)

        class MlflowLogger:
            def __init__(self, mlflow):
                self.mlflow = mlflow

            @hookimpl
            def covseg_train_start(self, run_dir, config):
                self.mlflow.start_run(run_name=run_dir.name)   # MLFLOW_TRACKING_URI says where
                self.mlflow.log_params({key: str(value) for key, value in config.items()})

            @hookimpl
            def covseg_epoch_end(self, epoch, record):
                self.mlflow.log_metrics({key.replace("/", "_"): value for key, value in record.items()},
                                        step=epoch)

            @hookimpl
            def covseg_train_end(self, status):
                self.mlflow.end_run("FINISHED" if status == "finished" else "KILLED")
    """


# ---- lifecycle hooks ------------------------------------------------------------------------------
# Called on every plugin that implements them and on the loggers of the run (--log), in the training
# process (rank 0 only under torchrun). Arguments are read-only copies (mappings are
# MappingProxyType, lists tuples, arrays read-only): changing them changes nothing in the run. The
# return value is ignored. A hook that raises does not stop training: covseg reports it once, as one
# warning line naming the plugin, its package and the hook (through the ``covseg`` logger), calls
# that plugin no more in this run, and the run goes on and ends normally; catch errors you want to
# recover from (a network hiccup) in the hook itself. Ctrl-C (KeyboardInterrupt) is not caught.


@hookspec
def covseg_train_start(
    run_dir: Path, config: Mapping[str, Any], first_epoch: int, steps_per_epoch: int
) -> None:
    """A training run starts: its folder exists, with config.json and split.json.

    ``run_dir``: the run folder (write your files under it, e.g. ``run_dir / "mylogger"``).
    ``config``: the run's settings as in config.json (``config["model"]``, ``config["epochs"]``,
    ``config["lr"]``, ...). ``first_epoch``: the first epoch this call trains, 1 for a new run,
    N + 1 for a run resumed after epoch N (epochs after N may have been logged before the stop:
    drop or overwrite them). ``steps_per_epoch``: optimiser steps per epoch. Example::

        @hookimpl
        def covseg_train_start(run_dir, config):
            print(f"training {config['model']} into {run_dir}")
    """


@hookspec
def covseg_train_progress(epoch: int, steps: int, steps_per_epoch: int, loss: float) -> None:
    """Every 10 optimiser steps: ``steps`` of ``steps_per_epoch`` done in ``epoch``, ``loss`` the
    mean training loss of this epoch so far (this process's batches).

    Reading the loss waits for the device; covseg does it only when some plugin implements this
    hook. covseg's own progress bar is such a listener. Example::

        @hookimpl
        def covseg_train_progress(epoch, steps, loss):
            print(f"epoch {epoch} step {steps}: loss {loss:.4f}")
    """


@hookspec
def covseg_epoch_end(
    run_dir: Path,
    config: Mapping[str, Any],
    epoch: int,
    record: Mapping[str, float],
    metrics: Mapping[str, float],
    best_epoch: int,
    best_metrics: Mapping[str, float],
    samples: ValidationSamples,
) -> None:
    """An epoch was trained and validated; metrics.jsonl, best.pt and last.pt are written.

    ``record``: the epoch's metrics.jsonl line: ``epoch``, ``train_loss`` (mean over the epoch),
    ``lr`` (at the epoch's start), ``images_per_s``, ``epoch_time_s`` and every validation metric.
    ``metrics``: the validation metrics alone (``miou``, ``lesion_miou``, ``pixel_accuracy``,
    ``iou/effusion``, ...; NaN for a class absent from validation). ``best_epoch`` and
    ``best_metrics``: the epoch with the highest validation mIoU so far (``best_epoch == epoch``
    when this one is it). ``samples``: a few fixed validation slices;
    ``samples.predict()`` returns :class:`~covseg.plugins.SlicePrediction` records (image, truth,
    prediction) of this epoch's model, computed only when a plugin asks. Example::

        from covseg.plugins import hookimpl, side_by_side

        @hookimpl
        def covseg_epoch_end(run_dir, epoch, metrics, samples):
            print(f"epoch {epoch}: mIoU {metrics['miou']:.3f}")
            for sample in samples.predict():
                picture = side_by_side(sample.image, sample.truth, sample.prediction)  # (H, 3W+4, 3) uint8
    """


@hookspec
def covseg_train_end(
    run_dir: Path, config: Mapping[str, Any], status: str, summary: Mapping[str, Any] | None
) -> None:
    """A run ends: always called once after ``covseg_train_start``, also when it stops early.

    ``status``: ``"finished"`` (summary.json is written; ``summary`` holds it: ``best_epoch``,
    ``best_metrics``, ``final_metrics``, ``wall_time_s``, ...), ``"interrupted"`` (Ctrl-C or SIGTERM;
    last.pt resumes it) or ``"failed"`` (e.g. the loss became NaN); ``summary`` is None unless
    finished. Close files and connections here. Example::

        @hookimpl
        def covseg_train_end(status, summary):
            if status == "finished":
                print(f"best mIoU {summary['best_metrics']['miou']:.3f} at epoch {summary['best_epoch']}")
    """


HOOK_NAMES: tuple[str, ...] = tuple(
    name for name, value in list(globals().items()) if hasattr(value, f"{PROJECT_NAME}_spec")
)
"""The hooks above, by name: what a plugin module defines."""

LIFECYCLE_HOOKS: tuple[str, ...] = (
    "covseg_train_start", "covseg_train_progress", "covseg_epoch_end", "covseg_train_end",
)
"""The lifecycle hooks: called on every plugin during a run, not collected as entries."""
