"""TrainConfig: every setting of a training run, each described once; its JSON form is config.json.

Each field carries its :class:`~covseg.training.settings.Setting` (option name, help, unit, bounds,
commands, resume and benchmark behaviour); the command-line options, config-file checks, bounds
checks and conflict rules are all generated from it. A run's values come from four layers, the
later winning: field default < recipe (``--recipe``) < config file (``--config FILE``) < explicit
option. ``sources`` records where each value that is not the field default came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covseg import __version__
from covseg.core.errors import CovsegError
from covseg.devices import PRECISIONS
from covseg.files import read_json_object, write_json
from covseg.runs import SUBSETS
from covseg.training.recipes import DEFAULT_RECIPE, RECIPES
from covseg.training.settings import (
    BENCHMARK,
    DATA,
    MACHINE,
    PAIR,
    RUN,
    TRAIN,
    TRAIN_ONLY,
    Rule,
    Setting,
    check_value,
    explicit,
    fields_with_settings,
    format_number,
    option_name,
    setting,
    unknown_key_hint,
)

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULERS = ("none", "warmup-cosine", "warmup-poly", "poly")
CLASS_WEIGHTINGS = ("none", "sqrt-inverse-frequency")
INTENSITIES = ("hu", "uint8")
MIN_IMAGE_SIZE = 32
MAX_IMAGE_SIZE = 4096
WARMUP_SHARE = 1 / 30
"""A warm-up scheduler's default warm-up: this share of the epochs, rounded up (5 of 150)."""


RENAMED = {"amp": "; it is now precision: bf16 (amp on) or fp32 (amp off)"}
"""Settings of earlier covseg versions, and what replaced them (the hint of the error)."""


def _renamed_amp(values: dict[str, Any]) -> dict[str, Any]:
    """A config.json from before ``--precision``: its ``amp`` as ``precision``, so old runs still load.

    ``amp`` on meant bf16 on CUDA and float32 on the CPU, which is the device default now (None);
    off was float32 everywhere, but a CPU run recorded it off without being asked, so only an
    ``amp`` the user switched off (``--no-amp``) becomes ``fp32``.
    """
    if "amp" not in values or "precision" in values:
        return values
    values = dict(values)
    amp = values.pop("amp")
    sources = values.get("sources")
    source = None
    if isinstance(sources, dict):
        values["sources"] = sources = dict(sources)
        source = sources.pop("amp", None)
    if amp is False and isinstance(source, str) and explicit(source):
        values["precision"] = "fp32"
        sources["precision"] = f"{source} (amp off, before --precision)"
    return values


def _dataset_options(value: Any) -> dict[str, str]:
    """``--dataset-option key=value`` strings, or a file's table of scalars, as strings."""
    from covseg.data.options import parse_dataset_options

    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return parse_dataset_options(value)
    if not isinstance(value, dict):
        return value  # the type check names what it is
    options = {}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise CovsegError(f"option '{key}' must be a string or a number, not {type(item).__name__}")
        options[str(key)] = str(item)
    return options


def _option_value(key: str, text: str) -> Any:
    """A ``--model-option`` value: a JSON scalar where it parses (``16``, ``0.5``, ``true``, ``null``,
    ``"16"``), else the text itself."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict | list):
        return text
    if isinstance(value, float) and not math.isfinite(value):
        raise CovsegError(f"{key}={text}: not a finite number")
    return value


def _model_options(value: Any) -> Any:
    """``--model-option KEY=VALUE`` strings (a later key wins), or a file's table of scalars."""
    from covseg.core.calls import SET_BY_COVSEG

    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        options = {}
        for pair in value:
            key, separator, text = pair.partition("=")
            if not separator or not key.strip():
                raise CovsegError(f"'{pair}' is not KEY=VALUE (e.g. base_channels=32)")
            options[key.strip()] = _option_value(key.strip(), text.strip())
        value = options
    if not isinstance(value, dict):
        return value  # the type check names what it is
    for key, item in value.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise CovsegError(f"option name {key!r} is not a keyword argument name")
        if key in SET_BY_COVSEG:
            raise CovsegError(f"'{key}' is set by covseg (num_classes and in_channels from the data, "
                              "pretrained by --pretrained), not a model option")
        if item is not None and not isinstance(item, str | int | float | bool):
            raise CovsegError(f"option '{key}' must be a number, true/false, null or text, not "
                              f"{type(item).__name__}")
        if isinstance(item, float) and not math.isfinite(item):
            raise CovsegError(f"option '{key}' must be a finite number, not {item}")
    return dict(value)


def _show_options(value: dict[str, Any]) -> str:
    return ",".join(f"{key}={json.dumps(item)}" for key, item in value.items())


def _loggers(value: Any) -> Any:
    """``--log tensorboard`` (repeatable, or comma-separated) or a file's name or list of names."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return value  # the type check names what it is
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def _normalisation(value: Any) -> Any:
    """``--window lung,mediastinal,bone`` (or ``LEVEL:WIDTH``) or a recorded ``{"windows": ...}``."""
    from covseg.data.intensity import Normalisation

    if isinstance(value, str):
        return Normalisation.parse(value).to_dict()
    if isinstance(value, dict):
        return Normalisation.from_dict(value).to_dict()
    return value


def _show_options(value: dict[str, str]) -> str:
    return ",".join(f"{key}={item}" for key, item in value.items())


def _show_windows(value: dict[str, Any]) -> str:
    """``-600:1500 (lung)``: the windows as numbers, and the preset each one is, when all are presets
    (the numbers are what was used, whichever way they were typed)."""
    from covseg.data.intensity import preset_name

    windows = value.get("windows", [])
    numbers = ",".join(f"{level:g}:{width:g}" for level, width in windows)
    names = [preset_name(window) for window in windows]
    return f"{numbers} ({','.join(names)})" if windows and all(names) else numbers


def _augmentation(value: Any) -> Any:
    """A preset name (:data:`covseg.data.augment.PRESETS`: ``reference``, ``nnunet``) or a recorded
    table; config.json records the table, so a run means the same if a preset changes later."""
    from covseg.data.augment import PRESETS, AugmentationConfig

    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]().to_dict()
    if isinstance(value, str):
        raise CovsegError(f"'{value}' is not an augmentation preset (presets: {', '.join(PRESETS)})")
    if isinstance(value, dict):
        return AugmentationConfig.from_dict(value).to_dict()
    return value


def _eval_subset_name(value: Any) -> str | None:
    """``--split val`` given to train: eval's subset name, not a split file (unless one has that name)."""
    if isinstance(value, str) and value in SUBSETS and not Path(value).exists():
        names = f"{', '.join(SUBSETS[:-1])} or {SUBSETS[-1]}"
        return (f"there is no split file {value}, and eval's --split NAME ({names}) picks which of a "
                "run's slices it scores")
    return None


def _path(value: Any) -> Any:
    return str(value) if isinstance(value, os.PathLike) else value


def _default_augmentation() -> dict[str, Any]:
    return _augmentation("reference")


def _default_workers() -> int:
    return min(4, os.cpu_count() or 1)


def _source(label: str) -> str:
    """A value's source from its error label: ``--lr``, ``argument`` or ``config FILE`` (``FILE: key``)."""
    return label if label.startswith("--") or label == "argument" else f"config {label.rsplit(': ', 1)[0]}"


def _uses_warmup(config: TrainConfig) -> bool:
    return config.scheduler.startswith("warmup-")


def _uses_momentum(config: TrainConfig) -> bool:
    return config.optimizer == "sgd"


def _seeded_split(config: TrainConfig) -> bool:
    return config.split_file is None


def _single_split(config: TrainConfig) -> bool:
    return config.folds is None


def _separate_test_set(config: TrainConfig) -> bool:
    return config.test_data is not None or config.test_dataset is not None


@dataclass
class TrainConfig:
    """Everything a training run needs, as plain JSON-able values.

    Build one with :meth:`resolve` or :meth:`from_recipe` (recipe values, then your overrides).
    ``dataset`` None with ``data`` None means the embedded phantom; training records the resolved
    dataset name and the slices' ``intensity``. ``batch_size`` is the global batch: under torchrun
    each of N processes takes ``batch_size / N`` slices per step, so a recipe means the same on one
    GPU or eight. ``normalisation`` None means the lung window for Hounsfield-unit data; 8-bit
    data uses none (divided by 255), and its config records None.
    """

    model: str = field(metadata=setting(help="Model to train (see `covseg models`).", commands=(TRAIN,),
                                        scope=PAIR, pair_option="--models"))
    model_options: dict[str, Any] = field(default_factory=dict, metadata=setting(
        option="--model-option", metavar="KEY=VALUE", parse=_model_options, show=_show_options,
        repeatable=True, commands=(TRAIN,), scope=TRAIN_ONLY, default_text="none",
        help="Keyword argument of the model's factory (repeatable), e.g. base_channels=32 for unet or "
        "output_stride=8 for DeepLab V3+; numbers, true/false and null are read as JSON, the rest as "
        "text. Checkpoints record them."))
    dataset: str | None = field(default=None, metadata=setting(
        option="--dataset", panel=DATA, metavar="NAME", default_text="detected from --data",
        help="Dataset plugin name (see `covseg data list`); with neither --dataset nor --data, the "
        "embedded phantom."))
    data: str | None = field(default=None, metadata=setting(
        option="--data", panel=DATA, metavar="PATH", parse=_path, default_text="none",
        help="Data folder or file; the format is detected."))
    dataset_options: dict[str, str] = field(default_factory=dict, metadata=setting(
        option="--dataset-option", panel=DATA, metavar="KEY=VALUE", parse=_dataset_options, repeatable=True,
        default_text="none", help="Dataset setting (repeatable), e.g. count=40."))
    recipe: str = field(default=DEFAULT_RECIPE, metadata=setting(
        option="--recipe", choices=tuple(RECIPES), metavar="NAME",
        help="Named settings that fill in what neither an option nor --config sets: reference is the "
        "study's protocol, default covseg's."))
    epochs: int = field(default=150, metadata=setting(
        option="--epochs", unit="epochs", low=1, high=100_000, resumable=True,
        help="Epochs to train (on --resume: train on to this many)."))
    batch_size: int = field(default=8, metadata=setting(
        option="--batch-size", unit="slices", low=1, high=4096,
        help="Global batch (split over torchrun processes)."))
    optimizer: str = field(default="adamw", metadata=setting(
        option="--optimizer", choices=OPTIMIZERS, metavar="NAME", help="Optimiser."))
    lr: float = field(default=1e-3, metadata=setting(
        option="--lr", low=0, high=10, open_low=True, metavar="NUMBER", help="Peak learning rate."))
    weight_decay: float = field(default=1e-4, metadata=setting(
        option="--weight-decay", low=0, high=1, metavar="NUMBER",
        help="Weight decay (not on biases and norms)."))
    momentum: float = field(default=0.9, metadata=setting(
        option="--momentum", low=0, high=1, open_high=True, metavar="NUMBER",
        help="Nesterov momentum of the sgd optimiser (nnU-Net uses 0.99).",
        rule=Rule(_uses_momentum, "optimizer", "only sgd takes a momentum", unused=0.9)))
    scheduler: str = field(default="warmup-cosine", metadata=setting(
        option="--scheduler", choices=SCHEDULERS, metavar="NAME",
        help="Learning-rate schedule, stepped per batch: a linear warm-up then cosine or poly decay, "
        "poly without warm-up (nnU-Net's lr x (1 - progress)^0.9), or none (constant)."))
    warmup_epochs: int | None = field(default=None, metadata=setting(
        option="--warmup-epochs", unit="epochs", low=0, high=100_000,
        help="Linear warm-up of a warmup-* scheduler.",
        default_text=f"1/{round(1 / WARMUP_SHARE)} of the epochs, rounded up",
        rule=Rule(_uses_warmup, "scheduler", "no warm-up", unused=0)))
    loss: str = field(default="cross-entropy+dice", metadata=setting(
        option="--loss", metavar="NAME", help="Loss: any installed loss plugin (see `covseg plugins`)."))
    class_weighting: str = field(default="sqrt-inverse-frequency", metadata=setting(
        option="--class-weighting", choices=CLASS_WEIGHTINGS, metavar="NAME",
        help="Class weights from the training masks, handed to the loss (the built-in losses weight "
        "their cross-entropy with them)."))
    augmentation: dict[str, Any] = field(default_factory=_default_augmentation, metadata=setting(
        parse=_augmentation,
        help="Augmentation: a preset, 'reference' (rotation, flips, Gaussian noise) or 'nnunet' (nnU-Net's "
        "2D set: adds scaling, blur, brightness/contrast, gamma), or a table of AugmentationConfig "
        "values (config files and recipes only)."))
    recalibrate_bn: bool = field(default=True, metadata=setting(
        option="--recalibrate-bn",
        help="Recompute batch-norm statistics on the training slices before each validation."))
    foreground_oversampling: float = field(default=0.0, metadata=setting(
        option="--foreground-oversampling", low=0, high=1, metavar="NUMBER",
        help="Share of each epoch's training samples drawn from the slices that hold a lesion (the "
        "rest as usual, from all); nnU-Net forces 0.33 of its patches to hold foreground."))
    ema_decay: float | None = field(default=None, metadata=setting(
        option="--ema-decay", low=0, high=1, open_low=True, open_high=True, metavar="NUMBER",
        default_text="none: no EMA",
        help="Keep an exponential moving average of the weights (per step, e.g. 0.999); validation, "
        "best.pt and the test score use the averaged weights."))
    normalisation: dict[str, Any] | None = field(default=None, metadata=setting(
        option="--window", panel=DATA, metavar="WINDOWS", parse=_normalisation, show=_show_windows,
        default_text="lung",
        help="HU window(s) for Hounsfield-unit data: lung, lung,mediastinal,bone or LEVEL:WIDTH "
        "(8-bit data takes none)."))
    image_size: int | None = field(default=None, metadata=setting(
        option="--image-size", unit="px", low=MIN_IMAGE_SIZE, high=MAX_IMAGE_SIZE, panel=DATA,
        bound_reason="the models down-sample 32x", default_text="native size",
        help="Resize slices to this square side (e.g. 96 for a quick CPU run)."))
    seed: int = field(default=0, metadata=setting(
        option="--seed", low=0, high=2**32 - 1, commands=(TRAIN,), scope=PAIR, pair_option="--seeds",
        help="Seed of the split, initialisation and augmentation."))
    val_fraction: float | None = field(default=0.2, metadata=setting(
        option="--val-fraction", low=0, high=1, open_low=True, open_high=True, metavar="NUMBER",
        panel=DATA, help="Share of the slices (those left after the test set) held out for validation, "
        "where the best epoch is chosen.",
        rule=(Rule(_seeded_split, "split_file", "the split file fixes the validation slices"),
              Rule(_single_split, "folds", "each fold in turn is the validation set"))))
    test_fraction: float | None = field(default=None, metadata=setting(
        option="--test-fraction", low=0, high=1, open_low=True, open_high=True, metavar="NUMBER",
        panel=DATA, default_text="none: no test set",
        help="Share of the slices held out as a test set, carved out (seeded) before the "
        "train/validation split: never trained on, never used to choose the epoch, scored once with "
        "best.pt at the end.",
        rule=Rule(_seeded_split, "split_file", "the split file fixes the test slices")))
    test_dataset: str | None = field(default=None, metadata=setting(
        option="--test-dataset", panel=DATA, metavar="NAME", default_text="detected from --test-data",
        help="Dataset plugin of a separate test set (with --test-dataset-option; alone, e.g. "
        "phantom with another seed)."))
    test_data: str | None = field(default=None, metadata=setting(
        option="--test-data", panel=DATA, metavar="PATH", parse=_path, default_text="none",
        help="A separate labelled test set (folder or file, format detected): scored once with "
        "best.pt at the end, never used for training or choosing the epoch."))
    test_dataset_options: dict[str, str] = field(default_factory=dict, metadata=setting(
        option="--test-dataset-option", panel=DATA, metavar="KEY=VALUE", parse=_dataset_options,
        repeatable=True, default_text="none", show=_show_options,
        help="Setting of the --test-data set (repeatable).",
        rule=Rule(_separate_test_set, "test_data", "a setting of the separate test set", unused={})))
    split_file: str | None = field(default=None, metadata=setting(
        option="--split-file", renamed_from=("--split",), metavar="FILE", parse=_path, panel=DATA,
        default_text="seeded split", renamed_misread=_eval_subset_name,
        help="A split.json (of a run, cross-validation or benchmark) to use instead of a seeded split."))
    folds: int | None = field(default=None, metadata=setting(
        option="--folds", unit="folds", low=2, high=100, panel=DATA, default_text="none: one split",
        help="Cross-validation: train one model per fold (each fold in turn validates, the test set "
        "stays out of all), report the out-of-fold metrics and write an ensemble of the fold models."))
    fold: int | None = field(default=None, metadata=setting(
        low=0, high=99, settable=False, commands=(),
        help="The fold this run trains, in a cross-validation (recorded by covseg)."))
    num_classes: int = field(default=4, metadata=setting(
        option="--num-classes", low=2, high=256, panel=DATA, default_text="the data set's label count",
        help="Classes the model predicts, background included; taken from the data's labels, and "
        "refused when it disagrees with them."))
    class_names: list[str] | None = field(default=None, metadata=setting(
        settable=False, commands=(),
        help="Class names in mask-value order, recorded from the data's label set."))
    in_channels: int = field(default=3, metadata=setting(
        low=1, high=3, settable=False, help="Input channels of the model."))
    pretrained: bool = field(default=False, metadata=setting(
        option="--pretrained", help="Start from ImageNet backbone weights."))
    device: str = field(default="auto", metadata=setting(
        option="--device", scope=MACHINE, resumable=True, panel=RUN, metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N."))
    workers: int = field(default_factory=_default_workers, metadata=setting(
        option="--workers", low=0, high=256, scope=MACHINE, resumable=True, panel=RUN,
        default_text="4, at most the CPU count", help="DataLoader worker processes."))
    precision: str | None = field(default=None, metadata=setting(
        option="--precision", choices=PRECISIONS, scope=MACHINE, resumable=True, panel=RUN, metavar="NAME",
        default_text="bf16 on CUDA, fp32 on the CPU",
        help="Compute precision: bf16 autocast (weights, optimiser state, loss and metrics stay float32) "
        "or fp32 throughout."))
    channels_last: bool | None = field(default=None, metadata=setting(
        option="--channels-last", scope=MACHINE, resumable=True, panel=RUN,
        default_text="on for CUDA, off on the CPU",
        help="Channels-last (NHWC) images and weights, the layout tensor cores read fastest."))
    compile: bool = field(default=False, metadata=setting(
        option="--compile", scope=MACHINE, resumable=True, panel=RUN,
        help="torch.compile the training step (best.pt holds the plain model's weights)."))
    deterministic: bool = field(default=False, metadata=setting(
        option="--deterministic", scope=MACHINE, resumable=True, panel=RUN,
        help="Deterministic algorithms (slower on CUDA)."))
    loggers: list[str] = field(default_factory=list, metadata=setting(
        option="--log", metavar="NAME", parse=_loggers, repeatable=True, scope=MACHINE, resumable=True,
        panel=RUN, default_text="none",
        help="Also log losses, lr, metrics and validation overlays per epoch to an installed logger "
        "plugin (repeatable or comma-separated; see `covseg plugins`), e.g. tensorboard."))
    checkpoint_every: int = field(default=1, metadata=setting(
        option="--checkpoint-every", unit="epochs", low=1, high=100_000, scope=MACHINE, resumable=True,
        panel=RUN, help="Write last.pt every N epochs (and at the end)."))
    out: str = field(default="runs", metadata=setting(
        option="--out", metavar="DIR", parse=_path, commands=(TRAIN,), scope=PAIR, panel=RUN,
        pair_option="--out",
        help="Runs go to OUT/<model>/<timestamp>/."))
    intensity: str | None = field(default=None, metadata=setting(
        choices=INTENSITIES, settable=False,
        help="Intensity kind of the training slices, recorded from the data."))
    sources: dict[str, str] = field(default_factory=dict)
    """Where each value that is not the field default came from: ``--lr`` (an option), ``config
    FILE``, ``recipe NAME``, ``argument`` (the Python API), ``derived ...`` or ``not used ...``."""

    def __post_init__(self) -> None:
        if self.warmup_epochs is None:
            self.warmup_epochs = math.ceil(self.epochs * WARMUP_SHARE) if _uses_warmup(self) else 0
            self.sources.setdefault("warmup_epochs", "derived from epochs and scheduler")
        for item, info, _ in fields_with_settings(type(self)):
            for rule in info.rules:
                if rule.applies(self):
                    continue
                # Whether the user gave it, not whether it differs from the default: `--momentum 0.9`
                # with adam is as ignored as `--momentum 0.99`.
                if explicit(self.sources.get(item.name)) and getattr(self, rule.depends_on) is None:
                    raise CovsegError(f"{self._label(item.name)} has no effect without "
                                      f"{self.where(rule.depends_on)} ({rule.reason}); drop it")
                if explicit(self.sources.get(item.name)):
                    raise CovsegError(
                        f"{self._label(item.name)} has no effect with {self._label(rule.depends_on)} "
                        f"({rule.reason}); drop one")
                if getattr(self, item.name) == rule.unused:
                    continue
                setattr(self, item.name, rule.unused)
                self.sources[item.name] = f"not used: {rule.reason}"

    # ---- building one ---------------------------------------------------------------------------
    @classmethod
    def resolve(
        cls,
        model: str | None = None,
        *,
        options: Mapping[str, Any] | None = None,
        config_file: str | Path | None = None,
        command: str = TRAIN,
        from_cli: bool = False,
    ) -> TrainConfig:
        """The config of field defaults < recipe < ``config_file`` < ``options`` (explicit values).

        ``options`` maps field names to values (``from_cli``: they came from the command line and
        errors name the options). The recipe is ``options["recipe"]``, else the config file's, else
        ``default``. Raises :class:`CovsegError` (one line naming the option, or the file and key)
        for unknown settings, wrong types, values out of bounds and conflicting settings.
        """
        explicit_values, labels = cls.explicit_layers(options or {}, config_file, command, from_cli)
        if "recipe" in explicit_values:
            recipe_name, recipe_where = explicit_values["recipe"], labels["recipe"]
        else:
            recipe_name, recipe_where = DEFAULT_RECIPE, "--recipe"
        if recipe_name not in RECIPES:
            raise CovsegError(f"{recipe_where} {recipe_name}: unknown recipe; "
                              f"choose one of {', '.join(RECIPES)}")
        recipe = RECIPES[recipe_name]
        recipe_label = f"recipe {recipe.name}"
        recipe_values = cls.check_layer(dict(recipe.values), recipe_label, command)
        values = {**recipe_values, **explicit_values}
        sources = {**{key: recipe_label for key in recipe_values},
                   **{key: _source(label) if from_cli or ": " in label else "argument"
                      for key, label in labels.items()}}
        if model is not None:
            values["model"], sources["model"] = model, "argument"
        if values.get("model") is None:
            raise CovsegError("give a MODEL to train (see `covseg models`) or --resume RUN_DIR")
        config = cls(**values, sources=sources)
        config.validate()
        return config

    @classmethod
    def explicit_layers(
        cls,
        options: Mapping[str, Any],
        config_file: str | Path | None,
        command: str = TRAIN,
        from_cli: bool = True,
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """The user's values (``config_file`` under ``options``), checked, and how errors name each.

        Labels are ``--lr`` for an option and ``FILE: lr`` for a config-file key.
        """
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        if config_file is not None:
            from covseg.training.config_file import read_config_file

            values = cls.check_layer(read_config_file(Path(config_file)), str(config_file), command)
            labels = {key: f"{config_file}: {key}" for key in values}
        checked = cls.check_layer(options, None if from_cli else "TrainConfig", command)
        settings = cls.settings()
        values.update(checked)
        labels.update({key: option_name(key, settings[key]) for key in checked})
        return values, labels

    @classmethod
    def from_recipe(cls, model: str, recipe: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
        """The recipe's values for ``model``, with ``overrides`` (TrainConfig fields) on top."""
        return cls.resolve(model, options={"recipe": recipe, **overrides})

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """Every field's :class:`Setting`, by field name, in field order."""
        return {item.name: info for item, info, _ in fields_with_settings(cls)}

    @classmethod
    def check_layer(cls, values: Mapping[str, Any], origin: str | None, command: str) -> dict[str, Any]:
        """A layer's values, each key known, settable by ``command`` and of the right type.

        ``origin`` names the layer in errors (a file, ``recipe NAME``); None: command-line options,
        named by their option.
        """
        known = {item.name: (info, hint) for item, info, hint in fields_with_settings(cls)}
        checked = {}
        for key, value in values.items():
            if key not in known:
                hint = (RENAMED[key] if key in RENAMED else
                        unknown_key_hint(str(key), {name: info for name, (info, _) in known.items()}))
                raise CovsegError(f"{origin}: unknown setting '{key}'{hint}")
            info, hint = known[key]
            where = f"{origin}: {key}" if origin is not None else option_name(key, info)
            if not info.settable:
                raise CovsegError(f"{where}: covseg records this itself; it cannot be set")
            if command not in info.commands:
                if info.pair_option:
                    raise CovsegError(f"{where}: covseg {command} sets this itself per pair "
                                      f"(use {info.pair_option})")
                raise CovsegError(f"{where}: covseg {command} does not take this setting "
                                  f"(covseg {' and '.join(info.commands)} does)")
            checked[key] = check_value(key, value, hint, info, where)
        return checked

    # ---- checks ---------------------------------------------------------------------------------
    def where(self, name: str, origin: str | None = None) -> str:
        """How an error names field ``name``: ``--epochs``, ``my.toml: epochs``, ``recipe NAME: lr``."""
        source = self.sources.get(name, "")
        if origin is not None:
            return f"{origin}: {name}"
        if source.startswith("config "):
            return f"{source.removeprefix('config ')}: {name}"
        if source.startswith("recipe "):
            return f"{source}: {name}"
        return option_name(name, self.settings().get(name))

    def _label(self, name: str, origin: str | None = None) -> str:
        """:meth:`where` with the value: ``--epochs 0``, ``my.toml: epochs 0``."""
        value, info = getattr(self, name), self.settings().get(name)
        if info is not None and info.show is not None and value is not None:
            shown = info.show(value)
        else:
            shown = format_number(value) if isinstance(value, float) else str(value)
        return f"{self.where(name, origin)} {shown}"

    def validate(self, origin: str | None = None) -> None:
        """One-line errors, naming the option (or ``origin``: file and key), for values no run can use."""
        from covseg.training.settings import bounds_problem

        for item, info, hint in fields_with_settings(type(self)):
            value = getattr(self, item.name)
            check_value(item.name, value, hint, None, self.where(item.name, origin))
            if value is None:
                continue
            problem = bounds_problem(value, info)
            if problem is not None:
                raise CovsegError(f"{self._label(item.name, origin)}: {problem}")
        if self.warmup_epochs > self.epochs:
            raise CovsegError(f"{self._label('warmup_epochs', origin)}: must be at most the epochs "
                              f"({self._label('epochs', origin)})")
        if self.test_fraction is not None and _separate_test_set(self):
            other = "test_data" if self.test_data is not None else "test_dataset"
            raise CovsegError(f"{self._label('test_fraction', origin)} and {self._label(other, origin)} "
                              "are two test sets; give one (score the other with `covseg eval`)")
        if self.fold is not None and (self.folds is None or self.fold >= self.folds):
            raise CovsegError(f"{self.where('fold', origin)} {self.fold}: not a fold of "
                              f"{self.folds or 'no'} folds")

    def for_intensity(self, intensity: str, source: str) -> TrainConfig:
        """This config for slices of ``intensity`` (``hu`` or ``uint8``, read from ``source``).

        Hounsfield-unit data gets the lung window unless one was given; 8-bit data is divided by
        255 and takes no window, so a window given explicitly is refused and none is recorded.
        """
        from covseg.data.intensity import Normalisation

        sources = dict(self.sources)
        normalisation = self.normalisation
        if intensity == "uint8":
            if normalisation is not None and explicit(sources.get("normalisation")):
                raise CovsegError(f"{self._label('normalisation')}: {source} holds 8-bit slices, which are "
                                  f"divided by 255; HU windows apply to Hounsfield-unit data only; drop "
                                  f"{self.where('normalisation')}")
            normalisation = None
            sources.pop("normalisation", None)
        elif normalisation is None:
            normalisation = Normalisation().to_dict()
            sources["normalisation"] = "default for Hounsfield-unit data"
        return dataclasses.replace(self, normalisation=normalisation, intensity=intensity, sources=sources)

    # ---- config.json ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON form written as config.json (with the covseg version that wrote it).

        Data paths are kept as typed (shown to users) and, as ``<field>_resolved``, absolute, so that
        ``covseg eval RUN`` finds the data from any working folder."""
        resolved = {f"{name}_resolved": str(Path(value).resolve())
                    for name, value in (("data", self.data), ("test_data", self.test_data)) if value}
        return {**dataclasses.asdict(self), **resolved, "covseg_version": __version__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "config") -> TrainConfig:
        """Inverse of :meth:`to_dict`; every key is type-checked, errors name ``source`` and the key."""
        names = {item.name for item in dataclasses.fields(cls)}
        values = _renamed_amp({key: value for key, value in data.items()
                               if key not in ("covseg_version", "data_resolved", "test_data_resolved")})
        unknown = sorted(set(values) - names)
        if unknown:
            raise CovsegError(f"{source}: unknown setting(s) {', '.join(unknown)}")
        if not isinstance(values.get("model"), str):
            raise CovsegError(f"{source}: has no 'model' name")
        sources = values.pop("sources", {})
        if not isinstance(sources, dict) or not all(isinstance(item, str) for item in sources.values()):
            raise CovsegError(f"{source}: sources: expected a table of strings")
        known = {item.name: (info, hint) for item, info, hint in fields_with_settings(cls)}
        checked = {key: check_value(key, value, known[key][1], known[key][0], f"{source}: {key}")
                   for key, value in values.items()}
        config = cls(**checked, sources=dict(sources))
        config.validate(origin=source)
        return config

    def save(self, path: Path) -> None:
        """Write config.json atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        """Read a config.json written by :meth:`save`."""
        path = Path(path)
        return cls.from_dict(read_json_object(path), source=str(path))

    # ---- resuming -------------------------------------------------------------------------------
    def resumed_with(self, changes: Mapping[str, Any], labels: Mapping[str, str]) -> TrainConfig:
        """This (stopped) run's config with ``changes``; only resumable settings may differ.

        ``labels`` names where each change came from (``--lr``, ``config my.toml``) for the error.
        """
        settings = self.settings()
        changed = {key: value for key, value in changes.items() if getattr(self, key) != value}
        fixed = [key for key in changed if not settings[key].resumable]
        if fixed:
            allowed = ", ".join(option_name(name, info) for name, info in settings.items()
                                if info.resumable and info.option)
            raise CovsegError(f"--resume keeps the run's settings; {labels[fixed[0]]} cannot change "
                              f"(only {allowed} can)")
        sources = {**self.sources, **{key: f"{_source(labels[key])} on resume" for key in changed}}
        config = dataclasses.replace(self, **changed, sources=sources)
        config.validate()
        return config


def shared_settings(command: str = BENCHMARK) -> dict[str, Setting]:
    """The settings every pair of a benchmark shares (what its benchmark.json fixes)."""
    from covseg.training.settings import SHARED

    return {name: info for name, info in TrainConfig.settings().items()
            if info.scope == SHARED and info.settable and command in info.commands}
