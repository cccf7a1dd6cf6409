"""What plugins hand to covseg: one small, frozen record per model, dataset, metric, loss or logger,
and what covseg hands back to the lifecycle hooks (:class:`SlicePrediction`, :class:`ValidationSamples`).

These records are the whole contract between covseg and a plugin. The hook specifications in
:mod:`covseg.core.hookspecs` say when covseg asks for them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from covseg import CLASS_NAMES

if TYPE_CHECKING:
    import numpy as np
    import torch

# What users type: --models splits on commas and COVSEG_DISABLE_PLUGINS too, run folders are named
# after models, and terminals show names as they are; so no spaces, commas, slashes or markup.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _check_name(kind: str, name: object, example: str = "unet-lite") -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{kind} name {name!r} is not a name: use letters, digits and . _ + - (e.g. '{example}')"
        )


ALL_LESIONS = "all-lesions"
"""The pseudo-class of all lesion classes together: a lesion report's last row and summary.csv's
``all-lesions_*`` columns."""
RESERVED_CLASS_NAMES = (ALL_LESIONS, "voxel", "lung", "left_lung", "right_lung")
"""Names covseg derives itself, so no class may take them: :data:`ALL_LESIONS`, and the stems of
summary.csv's fixed columns ``voxel_ml``, ``lung_ml``, ``left_lung_ml`` and ``right_lung_ml``,
which a class's ``<name>_ml`` column would overwrite (:func:`covseg.inference.report.summary_row`)."""


def check_class_names(names: Sequence[str], kind: str = "class") -> None:
    """Refuse class names that could not each get their own CSV column, JSON key and file name.

    Each is a name (letters, digits, ``. _ + -``, so no file-name sanitiser folds two together), no
    two are equal ignoring case (case-insensitive file systems and spreadsheets fold case), and none
    is one of :data:`RESERVED_CLASS_NAMES` (ignoring case). Raises ``ValueError`` naming the
    ``kind`` (``class``, ``label``) and the name.
    """
    folded: dict[str, str] = {}
    for name in names:
        _check_name(kind, name, example="ground-glass")
        key = name.casefold()
        if key in folded:
            same = "named twice" if folded[key] == name else f"the same name as '{folded[key]}' (case aside)"
            raise ValueError(f"{kind} '{name}' is {same}")
        if key in RESERVED_CLASS_NAMES:
            raise ValueError(f"{kind} '{name}' takes a name covseg reports under itself "
                             f"({', '.join(RESERVED_CLASS_NAMES)}); rename it")
        folded[key] = name


def _check_callable(kind: str, name: str, field_name: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"{kind} '{name}': {field_name} is a {type(value).__name__}, not a function")


class ModelFactory(Protocol):
    """Builds a network: (N, in_channels, H, W) in, logits (N, num_classes, H, W) out.

    Further keyword arguments with defaults are the model's options (``--model-option KEY=VALUE``).
    """

    def __call__(
        self, num_classes: int = 4, in_channels: int = 3, pretrained: bool = False, **options: Any
    ) -> torch.nn.Module: ...


@dataclass(frozen=True)
class ModelEntry:
    """A segmentation architecture a plugin offers.

    ``factory(num_classes, in_channels, pretrained, **options)`` returns a ``torch.nn.Module`` whose
    forward takes a float tensor (N, in_channels, H, W) of any H, W >= 32 and returns logits
    (N, num_classes, H, W). ``pretrained=True`` loads ImageNet weights for the backbone. Its other
    keyword parameters (with defaults) are the model's options, set with ``--model-option
    KEY=VALUE`` and recorded in the checkpoint, like ``timm.create_model(name, **kwargs)``. The
    factory imports torch and the network code itself: listing models must not import them.

    ``aliases`` are further names that resolve to this model everywhere a model name is accepted
    (older names, so that old runs and scripts keep working); ``covseg models`` lists them.

    Raises ``ValueError``/``TypeError`` for a name that is not a name or a factory that is not
    callable.
    """

    name: str
    factory: ModelFactory
    description: str
    family: str
    aliases: Sequence[str] = ()

    def __post_init__(self) -> None:
        _check_name("model", self.name)
        _check_callable("model", self.name, "factory", self.factory)
        if isinstance(self.aliases, str):
            raise TypeError(f"model '{self.name}': aliases must be a tuple of names, not a string")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        for alias in self.aliases:
            _check_name("model alias", alias)
        if self.name in self.aliases:
            raise ValueError(f"model '{self.name}' lists its own name as an alias")

    @property
    def names(self) -> tuple[str, ...]:
        """The name and the aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class LabelSet:
    """The classes a data set's masks mark: ``names[i]`` is the class of mask value ``i``.

    Background comes first (value 0): covseg's lesion metrics and volumes leave class 0 out. Names
    are what users type (``--merge ground-glass,consolidation=infection``), so each is a name
    (letters, digits, ``. _ + -``) and appears once. MedSeg's four classes are :data:`MEDSEG_LABELS`;
    a one-class infection set (Zenodo COVID-19-CT-Seg, MosMedData) is
    ``LabelSet(("background", "infection"))``.

    Raises ``ValueError`` for fewer than 2 or more than 256 names (uint8 masks), a first name that
    is not ``background``, or names that :func:`check_class_names` refuses (not a name, repeated,
    or one covseg derives itself such as ``all-lesions``).
    """

    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.names, str):
            raise TypeError("label names must be a tuple of names, not a string")
        object.__setattr__(self, "names", tuple(self.names))
        if not 2 <= len(self.names) <= 256:
            raise ValueError(f"a label set has 2 to 256 classes (uint8 masks), not {len(self.names)}")
        check_class_names(self.names, "label")
        if self.names[0] != BACKGROUND:
            raise ValueError(f"the first label (mask value 0) must be '{BACKGROUND}', not '{self.names[0]}'")

    def __len__(self) -> int:
        return len(self.names)

    def describe(self) -> str:
        """``0 background, 1 infection``: each mask value with its class."""
        return ", ".join(f"{value} {name}" for value, name in enumerate(self.names))


BACKGROUND = "background"
MEDSEG_LABELS = LabelSet(CLASS_NAMES)
"""MedSeg's classes: 0 background, 1 ground-glass, 2 consolidation, 3 pleural effusion."""


@dataclass
class CTSlices:
    """2-D slices held in memory, with their label masks: what a dataset plugin returns.

    - ``images[i]``: (H, W) or (H, W, 3) array. With ``intensity="hu"`` float Hounsfield units;
      with ``intensity="uint8"`` 8-bit values 0..255 (PNG-like slices).
    - ``masks[i]``: (H, W) uint8 labels in 0..len(labels)-1, same H, W as the image; ``masks`` is
      None for unlabelled data (prediction only).
    - ``labels``: the :class:`LabelSet` the masks use (default MedSeg's four classes); training
      takes the number of classes and their names from it.
    - ``spacing[i]``: (row, column) pixel size in millimetres, when known.
    - ``lung_masks[i]``: optional (H, W) bool lung masks (e.g. MedSeg's lung segmentation).
    - ``source``: where the slices came from, for messages and run records.
    - ``notes``: what the reader assumed or changed, one line each (e.g. "Hounsfield units (int16
      NIfTI ...)", NaN read as air), shown by ``covseg data info``.
    """

    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray] | None
    intensity: Literal["hu", "uint8"]
    source: str
    spacing: list[tuple[float, float]] | None = None
    lung_masks: list[np.ndarray] | None = None
    notes: list[str] = field(default_factory=list)
    labels: LabelSet = MEDSEG_LABELS

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class DatasetEntry:
    """A data set a plugin can read.

    ``load(path, options)`` returns :class:`CTSlices`. ``path`` is the user's ``--data`` (None when
    ``needs_path`` is False and the user gave none); ``options`` holds dataset-specific settings as
    strings (``--dataset-option key=value`` on the command line). Raise
    :class:`covseg.core.errors.CovsegError` with a one-line message that names the file for bad
    input.
    """

    name: str
    load: Callable[[Path | None, Mapping[str, str]], CTSlices]
    description: str
    needs_path: bool = True

    def __post_init__(self) -> None:
        _check_name("dataset", self.name)
        _check_callable("dataset", self.name, "load", self.load)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class MetricEntry:
    """A validation metric computed from one confusion matrix.

    ``compute(confusion)`` takes an integer array (C, C) accumulated over the whole validation set,
    rows the true class and columns the predicted class (class 0 background, C any count from 2),
    and returns a float, a sequence of C floats (one per class, in label order: covseg names them
    by the data's :class:`LabelSet`, e.g. ``iou/infection``), or a mapping of named floats.
    ``higher_is_better`` tells which way "best" points.
    """

    name: str
    compute: Callable[[np.ndarray], float | Mapping[str, float]]
    description: str
    higher_is_better: bool = True
    tags: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        _check_name("metric", self.name)
        _check_callable("metric", self.name, "compute", self.compute)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


class LossBuilder(Protocol):
    """Builds a loss: ``loss(logits, target)`` -> a scalar tensor."""

    def __call__(self, num_classes: int, class_weights: torch.Tensor | None) -> torch.nn.Module: ...


@dataclass(frozen=True)
class LossEntry:
    """A training loss a plugin offers (``--loss NAME``).

    ``build(num_classes=..., class_weights=...)`` returns a ``torch.nn.Module`` whose forward takes
    logits (N, num_classes, H, W) (float32 or bfloat16 under autocast) and the target labels
    (N, H, W) int64 in 0..num_classes-1, and returns the mean loss as a scalar tensor (0-d). Compute
    in float32 (``logits.float()``): softmax over bf16 logits loses the small probabilities.
    ``class_weights`` is a float32 tensor (num_classes,) from ``--class-weighting`` (the training
    masks' pixel counts), or None for ``--class-weighting none``; use it or ignore it, and say
    which in ``description``. Import torch inside ``build``.

    Raises ``ValueError``/``TypeError`` for a name that is not a name or a build that is not
    callable.
    """

    name: str
    build: LossBuilder
    description: str

    def __post_init__(self) -> None:
        _check_name("loss", self.name)
        _check_callable("loss", self.name, "build", self.build)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class LoggerEntry:
    """An experiment logger a plugin offers (``--log NAME``).

    ``create()`` is called once per run, before any data is read or run folder made, on every
    process; it returns the run's logger: an object whose methods, decorated with ``hookimpl``, are
    named like the lifecycle hooks (``covseg_train_start``, ``covseg_epoch_end``,
    ``covseg_train_end``, ...; see :mod:`covseg.core.hookspecs`). covseg registers it for that one
    run (on rank 0 under torchrun) and calls it like any plugin. ``create`` raises
    :class:`~covseg.core.errors.CovsegError` with one line when the logger cannot work here, e.g.
    its package is missing (say which extra to install); it imports that package itself.
    """

    name: str
    create: Callable[[], object]
    description: str

    def __post_init__(self) -> None:
        _check_name("logger", self.name)
        _check_callable("logger", self.name, "create", self.create)

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class SlicePrediction:
    """One validation slice as the model saw it, its truth and the model's prediction.

    - ``image``: (H, W) float32 in [0, 1], the first channel of the model input (the first HU
      window, e.g. the lung window, or the 8-bit slice / 255), at the training ``--image-size``;
    - ``truth`` and ``prediction``: (H, W) uint8 labels of the run's label set (e.g. 0 background,
      1 ground-glass, 2 consolidation, 3 effusion).

    The arrays are read-only. ``covseg.plugins.side_by_side(image, truth, prediction)`` makes the
    image | truth | prediction picture (RGB uint8) that covseg's TensorBoard logger shows.
    """

    slice_id: str
    image: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray


class ValidationSamples(Protocol):
    """A few fixed validation slices, predicted on demand: what ``covseg_epoch_end`` gets.

    ``ids``: the slices (the same every epoch of a run, so epochs compare: those of the validation
    split with the most lesion pixels). ``predict()`` runs this epoch's model on them the first time
    any plugin calls it in the epoch and returns the cached :class:`SlicePrediction` list to later
    callers; when no plugin calls it, it costs nothing. Valid only during the hook call.
    """

    @property
    def ids(self) -> tuple[str, ...]: ...

    def predict(self) -> list[SlicePrediction]: ...


Entry = ModelEntry | DatasetEntry | MetricEntry | LossEntry | LoggerEntry
