"""`covseg train MODEL`: train a model on a data set (the embedded phantom when none is given)."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.commands._common import console, error_console, user_errors
from covseg.core.errors import CovsegError

EXIT_INTERRUPTED = 130

RESUMABLE_OPTIONS = {"epochs", "device", "workers", "amp", "compile", "checkpoint_every"}
"""Options that may change when a run is resumed; the rest are fixed by the run's config.json."""

RECIPE_HELP = "(default: the recipe's)"


@user_errors
def train(
    ctx: typer.Context,
    model: str | None = typer.Argument(
        None, help="Model to train (see `covseg models`); omit with --resume."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset plugin name (see `covseg data list`)."
    ),
    data: Path | None = typer.Option(None, "--data", help="Data folder or file; the format is detected."),
    dataset_option: list[str] | None = typer.Option(
        None, "--dataset-option", help="Dataset setting key=value (repeatable), e.g. count=40."
    ),
    recipe: str = typer.Option(
        "default", "--recipe", help="reference (the study's protocol) or default (covseg's)."
    ),
    epochs: int | None = typer.Option(None, "--epochs", help=f"Epochs to train. {RECIPE_HELP}"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help=f"Global batch (split over torchrun processes). {RECIPE_HELP}"
    ),
    lr: float | None = typer.Option(None, "--lr", help=f"Peak learning rate. {RECIPE_HELP}"),
    weight_decay: float | None = typer.Option(None, "--weight-decay", help=f"Weight decay. {RECIPE_HELP}"),
    optimizer: str | None = typer.Option(None, "--optimizer", help=f"adam, adamw or sgd. {RECIPE_HELP}"),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help=f"none, warmup-cosine or warmup-poly (stepped per batch). {RECIPE_HELP}"
    ),
    warmup_epochs: int | None = typer.Option(
        None, "--warmup-epochs", help=f"Linear warm-up epochs. {RECIPE_HELP}"
    ),
    loss: str | None = typer.Option(
        None, "--loss", help=f"cross-entropy or cross-entropy+dice. {RECIPE_HELP}"
    ),
    class_weighting: str | None = typer.Option(
        None, "--class-weighting", help=f"none or sqrt-inverse-frequency (cross-entropy). {RECIPE_HELP}"
    ),
    recalibrate_bn: bool | None = typer.Option(
        None,
        "--recalibrate-bn/--no-recalibrate-bn",
        help=f"Recompute batch-norm statistics on the training slices before each validation. {RECIPE_HELP}",
    ),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        help="Resize slices to this square side (e.g. 96 for a quick CPU run). (default: native size)",
    ),
    window: str | None = typer.Option(
        None,
        "--window",
        help="HU window(s) for HU data: lung, lung,mediastinal,bone or LEVEL:WIDTH. (default: lung)",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed of the split, initialisation and augmentation. (default: 0)"
    ),
    val_fraction: float | None = typer.Option(
        None, "--val-fraction", help=f"Validation share. {RECIPE_HELP}"
    ),
    split: Path | None = typer.Option(None, "--split", help="A split.json to use instead of a seeded split."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N. (default: auto)"),
    workers: int | None = typer.Option(
        None, "--workers", help="DataLoader worker processes. (default: 4, at most the CPU count)"
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Runs go to OUT/<model>/<timestamp>/. (default: runs)"
    ),
    resume: Path | None = typer.Option(None, "--resume", help="Continue a stopped run from its last.pt."),
    pretrained: bool | None = typer.Option(
        None, "--pretrained/--no-pretrained", help="Start from ImageNet backbone weights. (default: no)"
    ),
    compile: bool | None = typer.Option(
        None, "--compile/--no-compile", help="torch.compile the model. (default: no)"
    ),
    amp: bool | None = typer.Option(
        None, "--amp/--no-amp", help="bf16 autocast on CUDA (the CPU always runs fp32). (default: on)"
    ),
    deterministic: bool | None = typer.Option(
        None,
        "--deterministic/--no-deterministic",
        help="Deterministic algorithms (slower on CUDA). (default: off)",
    ),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", help="Write last.pt every N epochs (and at the end). (default: 1)"
    ),
) -> None:
    """Train MODEL; writes runs/<model>/<timestamp>/ (config, split, metrics, best.pt, last.pt, summary).

    Without --dataset/--data it trains on the embedded phantom. Under
    `torchrun --nproc_per_node=N -m covseg train ...` it trains on N processes with
    DistributedDataParallel.
    """
    from covseg.data.intensity import Normalisation
    from covseg.data.options import parse_dataset_options
    from covseg.training import TrainConfig, TrainingInterrupted
    from covseg.training import train as run_training

    # Options typed by the user (or set through the environment) override the recipe; compared by
    # name because typer may bring its own copy of click's ParameterSource enum.
    given = {
        name
        for name in ctx.params
        if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")
    }
    values = {
        "dataset": dataset,
        "data": str(data) if data is not None else None,
        "dataset_options": parse_dataset_options(dataset_option),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "warmup_epochs": warmup_epochs,
        "loss": loss,
        "class_weighting": class_weighting,
        "recalibrate_bn": recalibrate_bn,
        "image_size": image_size,
        "normalisation": Normalisation.parse(window).to_dict() if window else None,
        "seed": seed,
        "val_fraction": val_fraction,
        "split_file": str(split) if split is not None else None,
        "device": device,
        "workers": workers,
        "out": str(out) if out is not None else None,
        "pretrained": pretrained,
        "compile": compile,
        "amp": amp,
        "deterministic": deterministic,
        "checkpoint_every": checkpoint_every,
    }
    option_of = {"dataset_option": "dataset_options", "window": "normalisation", "split": "split_file"}
    overrides = {
        option_of.get(name, name): values[option_of.get(name, name)]
        for name in given
        if option_of.get(name, name) in values
    }

    if resume is not None:
        config = _resume_config(resume, model, given, overrides)
    elif model is None:
        raise CovsegError("give a MODEL to train (see `covseg models`) or --resume RUN_DIR")
    else:
        config = TrainConfig.from_recipe(model, recipe=recipe, **overrides)
    try:
        run_training(config, console, resume=resume)
    except TrainingInterrupted as interrupted:
        error_console.print(
            f"interrupted: {interrupted.run_dir / 'last.pt'} holds epoch {interrupted.epoch}; resume with "
            f"`covseg train --resume {interrupted.run_dir}`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except KeyboardInterrupt:
        error_console.print("interrupted before training started; nothing to resume", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None


def _resume_config(run_dir: Path, model: str | None, given: set[str], overrides: dict):
    """The stopped run's config.json with the few options that may change on resume."""
    from covseg.runs import RUN_CONFIG
    from covseg.training import TrainConfig
    from covseg.training.state import load_resume_checkpoint

    load_resume_checkpoint(run_dir)  # one-line error for a folder that is not a run
    config = TrainConfig.load(run_dir / RUN_CONFIG)
    fixed = sorted(given - RESUMABLE_OPTIONS - {"resume", "model"})
    if fixed:
        allowed = ", ".join("--" + name.replace("_", "-") for name in sorted(RESUMABLE_OPTIONS))
        raise CovsegError(
            f"--resume keeps the run's settings; --{fixed[0].replace('_', '-')} cannot change "
            f"(only {allowed} can)"
        )
    if model is not None and model != config.model:
        raise CovsegError(f"--resume {run_dir}: the run trains {config.model}, not {model}")
    config = TrainConfig.from_dict({**config.to_dict(), **overrides}, source=str(run_dir / RUN_CONFIG))
    return config
