"""`covseg train MODEL`: train a model on a data set (the embedded phantom when none is given).

The training options are generated from the TrainConfig fields (:mod:`covseg.commands._settings`);
only MODEL, ``--config`` and ``--resume`` are written here. What the run shows (progress bar, epoch
lines, results table) is :class:`~covseg.commands._progress.TrainingProgress`, a listener of the
run's lifecycle hooks; the library's messages arrive through ``logging``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from covseg.commands._common import argument, console, error_console, option, user_errors
from covseg.commands._settings import with_settings
from covseg.training.settings import TRAIN

EXIT_INTERRUPTED = 130
MODEL_HELP = "Model to train (see `covseg models`); omit with --resume or when --config names it."
RESUME_HELP = "Continue a stopped run from its last.pt (or a stopped cross-validation, fold by fold)."
CONFIG_HELP = ("TOML or YAML file of settings (TrainConfig field names, e.g. epochs = 300); explicit "
               "options override it, it overrides the recipe.")


@user_errors
@with_settings(TRAIN)
def train(
    model: Annotated[str | None, argument("MODEL", help=MODEL_HELP)] = None,
    config: Annotated[Path | None, option("--config", metavar="FILE", help=CONFIG_HELP)] = None,
    resume: Annotated[Path | None, option("--resume", metavar="RUN_DIR", help=RESUME_HELP)] = None,
    *,
    settings: dict[str, Any],
) -> None:
    """Train MODEL; writes runs/<model>/<timestamp>/ (config, split, metrics, best.pt, last.pt, summary).

    Without --dataset/--data it trains on the embedded phantom. Each setting takes, in order, the
    explicit option, the --config file's value, the --recipe's value, then its default; config.json
    records the final values and where each came from. With --test-fraction or --test-data the
    best.pt is scored once on the held-out test set at the end; --folds K trains a K-fold
    cross-validation and its ensemble instead of one run. Under
    `torchrun --nproc_per_node=N -m covseg train ...` it trains on N processes with
    DistributedDataParallel.
    """
    from covseg.commands._progress import TrainingProgress, scores_table
    from covseg.runs import is_cross_validation, read_summary
    from covseg.training import TrainConfig, TrainingInterrupted
    from covseg.training import train as run_training

    if resume is not None:
        run_config = _resume_config(resume, model, settings, config)
        if run_config is None:
            return
    else:
        run_config = TrainConfig.resolve(model, options=settings, config_file=config, from_cli=True)
    try:
        run_dir = run_training(run_config, resume=resume, listeners=[TrainingProgress(console)])
    except TrainingInterrupted as interrupted:
        fold = getattr(interrupted, "fold", None)
        where = (f"fold {fold} of {interrupted.run_dir} holds epoch {interrupted.epoch}" if fold is not None
                 else f"{interrupted.run_dir / 'last.pt'} holds epoch {interrupted.epoch}")
        error_console.print(
            f"interrupted: {where}; resume with `covseg train --resume {interrupted.run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        error_console.print("interrupted before training started; nothing to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if is_cross_validation(run_dir):
        summary = read_summary(run_dir)
        console.print(scores_table(summary, f"{summary['model']}: {run_config.folds}-fold cross-validation "
                                            "(out of fold) and the ensemble's test"))
        console.print(f"Cross-validation folder: {run_dir}")


def _resume_config(run_dir: Path, model: str | None, options: dict[str, Any], config_file: Path | None):
    """The stopped run's config.json with the settings that may change on resume changed."""
    from covseg.core.errors import CovsegError
    from covseg.runs import RUN_CONFIG, SUMMARY, is_cross_validation
    from covseg.terminal import counted
    from covseg.training import TrainConfig
    from covseg.training.state import check_resume_epochs, load_resume_checkpoint

    # a cross-validation resumes fold by fold, each from its last.pt
    checkpoint = None if is_cross_validation(run_dir) else load_resume_checkpoint(run_dir)
    recorded = TrainConfig.load(run_dir / RUN_CONFIG)
    if model is not None and model != recorded.model:
        raise CovsegError(f"--resume {run_dir}: the run trains {recorded.model}, not {model}")
    changes, labels = TrainConfig.explicit_layers(options, config_file, TRAIN)
    resumed = recorded.resumed_with(changes, labels)
    if checkpoint is not None:
        trained = int(checkpoint["epoch"])
        check_resume_epochs(run_dir, trained, resumed.epochs)
        if trained == resumed.epochs and (run_dir / SUMMARY).is_file():
            # A finished run: nothing to train, and its config.json and summary stay as they are.
            console.print(f"{run_dir} has trained {counted(trained, 'epoch')} already, all of --epochs "
                          f"{resumed.epochs}; nothing to train (give a larger --epochs to train on).",
                          highlight=False, soft_wrap=True)
            return None
    return resumed
