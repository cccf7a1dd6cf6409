"""TrainConfig: every setting of a training run; its JSON form is the run's config.json."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covseg import __version__
from covseg.core.errors import CovsegError
from covseg.files import read_json_object, write_json
from covseg.training.losses import CLASS_WEIGHTINGS, LOSSES
from covseg.training.optim import OPTIMIZERS, SCHEDULERS
from covseg.training.recipes import get_recipe

MIN_IMAGE_SIZE = 32


def _default_normalisation() -> dict[str, Any]:
    from covseg.data.intensity import Normalisation

    return Normalisation().to_dict()


def _default_augmentation() -> dict[str, Any]:
    from covseg.data.augment import AugmentationConfig

    return AugmentationConfig.reference().to_dict()


@dataclass
class TrainConfig:
    """Everything a training run needs, as plain JSON-able values.

    Build one with :meth:`from_recipe` (recipe values, then your overrides), not field by field:
    the field defaults are the ``default`` recipe's, but only ``from_recipe`` derives the warm-up
    from the final epoch count. ``dataset`` None with ``data`` None means the embedded phantom;
    ``train`` records the resolved dataset name. ``batch_size`` is the global batch: under
    torchrun each of N processes takes ``batch_size / N`` slices per step, so a recipe means the
    same on one GPU or eight.
    """

    model: str
    dataset: str | None = None
    data: str | None = None
    dataset_options: dict[str, str] = field(default_factory=dict)
    recipe: str = "default"
    epochs: int = 150
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "warmup-cosine"
    warmup_epochs: int = 5
    loss: str = "cross-entropy+dice"
    class_weighting: str = "sqrt-inverse-frequency"
    augmentation: dict[str, Any] = field(default_factory=_default_augmentation)
    recalibrate_bn: bool = True
    normalisation: dict[str, Any] = field(default_factory=_default_normalisation)
    image_size: int | None = None
    seed: int = 0
    val_fraction: float = 0.2
    split_file: str | None = None
    num_classes: int = 4
    in_channels: int = 3
    pretrained: bool = False
    device: str = "auto"
    workers: int = field(default_factory=lambda: min(4, os.cpu_count() or 1))
    amp: bool = True
    compile: bool = False
    deterministic: bool = False
    checkpoint_every: int = 1
    out: str = "runs"

    @classmethod
    def from_recipe(cls, model: str, recipe: str = "default", **overrides: Any) -> TrainConfig:
        """The recipe's values for ``model``, with ``overrides`` (explicit options) on top."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"TrainConfig has no field(s) {', '.join(sorted(unknown))}")
        values = get_recipe(recipe).values(epochs=overrides.get("epochs"))
        values.update(overrides)
        config = cls(model=model, **values)
        config.validate()
        return config

    def validate(self) -> None:
        """One-line errors, naming the option, for values no run can use."""
        checks = [
            (self.epochs >= 1, "--epochs", f"{self.epochs}: must be at least 1"),
            (self.batch_size >= 1, "--batch-size", f"{self.batch_size}: must be at least 1"),
            (self.lr > 0, "--lr", f"{self.lr}: must be positive"),
            (self.weight_decay >= 0, "--weight-decay", f"{self.weight_decay}: must not be negative"),
            (
                0 <= self.warmup_epochs <= self.epochs,
                "--warmup-epochs",
                f"{self.warmup_epochs}: must be between 0 and --epochs {self.epochs}",
            ),
            (0 < self.val_fraction < 1, "--val-fraction", f"{self.val_fraction}: must be between 0 and 1"),
            (
                self.image_size is None or self.image_size >= MIN_IMAGE_SIZE,
                "--image-size",
                f"{self.image_size}: must be at least {MIN_IMAGE_SIZE} (the models down-sample 32x)",
            ),
            (self.workers >= 0, "--workers", f"{self.workers}: must not be negative"),
            (
                self.checkpoint_every >= 1,
                "--checkpoint-every",
                f"{self.checkpoint_every}: must be at least 1",
            ),
            (
                self.optimizer in OPTIMIZERS,
                "--optimizer",
                f"{self.optimizer}: choose one of {', '.join(OPTIMIZERS)}",
            ),
            (
                self.scheduler in SCHEDULERS,
                "--scheduler",
                f"{self.scheduler}: choose one of {', '.join(SCHEDULERS)}",
            ),
            (self.loss in LOSSES, "--loss", f"{self.loss}: choose one of {', '.join(LOSSES)}"),
            (
                self.class_weighting in CLASS_WEIGHTINGS,
                "--class-weighting",
                f"{self.class_weighting}: choose one of {', '.join(CLASS_WEIGHTINGS)}",
            ),
            (self.num_classes >= 2, "num_classes", f"{self.num_classes}: must be at least 2"),
        ]
        for ok, option, problem in checks:
            if not ok:
                raise CovsegError(f"{option} {problem}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written as config.json (with the covseg version that wrote it)."""
        return {**dataclasses.asdict(self), "covseg_version": __version__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Inverse of :meth:`to_dict`; ``source`` names the file in the one-line errors."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {key: value for key, value in data.items() if key != "covseg_version"}
        unknown = set(values) - names
        if unknown:
            raise CovsegError(f"{source}: unknown setting(s) {', '.join(sorted(unknown))}")
        if "model" not in values:
            raise CovsegError(f"{source}: has no 'model'")
        try:
            config = cls(**values)
        except TypeError as error:
            raise CovsegError(f"{source}: {error}") from None
        config.validate()
        return config

    def save(self, path: Path) -> None:
        """Write config.json atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config.json written by :meth:`save`."""
        path = Path(path)
        data = read_json_object(path)
        return cls.from_dict(data, source=str(path))
