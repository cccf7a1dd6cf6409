"""What an exported covseg model says about itself: ONNX ``metadata_props`` written and read back.

Every key starts with ``covseg.``; values are strings (JSON for lists and records) so that any ONNX
viewer (Netron, ``onnx.load(...).metadata_props``) shows them as they are. ``covseg predict`` reads
them to turn slices into model input exactly as in training and to name the classes.

Written by :mod:`covseg.export`, read by :mod:`covseg.inference`; it needs neither torch nor either
of them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from covseg import __version__
from covseg.core.entries import check_class_names
from covseg.core.errors import CovsegError
from covseg.data.intensity import INTENSITY_WORDS, Normalisation, describe_input
from covseg.data.orientation import DISPLAY_ORIENTATION, parse_orientation
from covseg.files import one_line

FORMAT = "covseg-onnx-1"
PREFIX = "covseg."
REQUIRED_KEYS = ("format", "model_name", "num_classes", "in_channels", "class_names", "normalisation")


@dataclass(frozen=True)
class ExportMetadata:
    """The settings an exported model needs at inference, and where its weights came from.

    ``image_size``: the square side the model was trained at (predict resizes slices to it), None
    for native-size training or an untrained export. ``source``: the run folder or checkpoint the
    weights came from (None when untrained). ``val_miou``: validation mIoU of that checkpoint.
    ``orientation``: the orientation the model's slices were shown in (``covseg.orientation``,
    nibabel axis codes of the array whose slices are ``raw[:, :, z].T``; see
    :mod:`covseg.data.orientation`); exports without the key were trained in
    :data:`~covseg.data.orientation.DISPLAY_ORIENTATION` too, so it is their default.
    ``extra``: further ``covseg.*`` keys (named without the prefix), kept through a round trip.
    """

    model_name: str
    num_classes: int
    in_channels: int
    class_names: tuple[str, ...]
    normalisation: Normalisation
    image_size: int | None = None
    trained: bool = False
    source: str | None = None
    epoch: int | None = None
    val_miou: float | None = None
    covseg_version: str = __version__
    orientation: str = DISPLAY_ORIENTATION
    intensity: str | None = None
    """What the model was trained on: ``hu`` or ``uint8`` (``covseg.intensity``); None for exports
    from before covseg recorded it, and for untrained exports."""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise CovsegError(
                f"{self.model_name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        try:
            check_class_names(self.class_names)
        except ValueError as error:
            raise CovsegError(f"{self.model_name}: {error}") from None
        if parse_orientation(self.orientation, f"{self.model_name}: orientation") != self.orientation:
            raise CovsegError(f"{self.model_name}: orientation '{self.orientation}' must be upper case")
        if self.intensity not in (None, *INTENSITY_WORDS):
            raise CovsegError(f"{self.model_name}: intensity '{self.intensity}' is not one of "
                              f"{', '.join(INTENSITY_WORDS)}")

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` of the ONNX file, all strings."""
        values = {
            "format": FORMAT,
            "covseg_version": self.covseg_version,
            "model_name": self.model_name,
            "num_classes": str(self.num_classes),
            "in_channels": str(self.in_channels),
            "class_names": json.dumps(list(self.class_names)),
            "normalisation": json.dumps(self.normalisation.to_dict()),
            "image_size": json.dumps(self.image_size),
            "trained": json.dumps(self.trained),
            "source": json.dumps(self.source),
            "epoch": json.dumps(self.epoch),
            "val_miou": json.dumps(self.val_miou),
            "orientation": self.orientation,
            **({"intensity": self.intensity} if self.intensity is not None else {}),
            **self.extra,
        }
        return {PREFIX + key: value for key, value in values.items()}

    @classmethod
    def from_props(cls, props: Mapping[str, str], origin: str) -> ExportMetadata:
        """Inverse of :meth:`to_props`; one-line error naming ``origin`` and the missing or bad key."""
        values = {key[len(PREFIX) :]: value for key, value in props.items() if key.startswith(PREFIX)}
        missing = [key for key in REQUIRED_KEYS if key not in values]
        if missing:
            keys = ", ".join(PREFIX + key for key in missing)
            raise CovsegError(f"{origin} has incomplete covseg metadata: {keys} missing")
        if values["format"] != FORMAT:
            raise CovsegError(
                f"{origin} has covseg metadata of format '{values['format']}'; this covseg reads '{FORMAT}'"
            )
        known = {
            "format",
            "covseg_version",
            "model_name",
            "num_classes",
            "in_channels",
            "class_names",
            "normalisation",
            "image_size",
            "trained",
            "source",
            "epoch",
            "val_miou",
            "orientation",
            "intensity",
        }
        try:
            class_names = json.loads(values["class_names"])
            if not (isinstance(class_names, list) and all(isinstance(name, str) for name in class_names)):
                raise ValueError("class_names is not a JSON list of strings")
            return cls(
                model_name=values["model_name"],
                num_classes=int(values["num_classes"]),
                in_channels=int(values["in_channels"]),
                class_names=tuple(class_names),
                normalisation=Normalisation.from_dict(json.loads(values["normalisation"])),
                image_size=_optional(values, "image_size", int),
                trained=bool(json.loads(values.get("trained", "false"))),
                source=_optional(values, "source", str),
                epoch=_optional(values, "epoch", int),
                val_miou=_optional(values, "val_miou", float),
                covseg_version=values.get("covseg_version", "unknown"),
                orientation=parse_orientation(values.get("orientation", DISPLAY_ORIENTATION),
                                              PREFIX + "orientation"),
                intensity=values.get("intensity"),
                extra={key: value for key, value in values.items() if key not in known},
            )
        except (ValueError, TypeError, CovsegError) as error:
            raise CovsegError(f"{origin} has malformed covseg metadata: {one_line(error)}") from None

    @property
    def ensemble_members(self) -> int | None:
        """How many models the graph averages (its ``covseg.ensemble`` entry), None for one model."""
        try:
            members = json.loads(self.extra.get("ensemble", "null") or "null")
            return int(members["members"]) if isinstance(members, dict) else None
        except (ValueError, TypeError, KeyError):
            return None

    def describe(self) -> str:
        """One line for logs: model, weights and how input is normalised."""
        weights = "untrained weights" if not self.trained else f"weights of {self.source}"
        members = self.ensemble_members
        if members is not None:
            weights = f"ensemble of {members} models (mean softmax) of {self.source}"
        if self.epoch is not None:
            weights += f" (epoch {self.epoch}"
            weights += f", val mIoU {self.val_miou:.4f})" if self.val_miou is not None else ")"
        size = f"{self.image_size}x{self.image_size}" if self.image_size else "native size"
        normalised = describe_input(self.normalisation, self.intensity)
        return f"{self.model_name}, {weights}, input {size}, {normalised}"


def _optional(values: Mapping[str, str], key: str, kind: type):
    if key not in values:
        return None
    value = json.loads(values[key])
    return None if value is None else kind(value)


def has_covseg_metadata(props: Mapping[str, str]) -> bool:
    """Whether an ONNX model carries covseg metadata at all (a foreign model does not)."""
    return any(key.startswith(PREFIX) for key in props)


def read_metadata_props(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (weights stored outside the file are not read)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise CovsegError(f"{path} does not exist")
    try:
        model = onnx.load(path, load_external_data=False)
    except (DecodeError, OSError, ValueError, RuntimeError) as error:
        raise CovsegError(f"{path} is not an ONNX model: {one_line(error)}") from None
    if not model.graph.node and not model.graph.input:
        raise CovsegError(f"{path} is not an ONNX model: it holds no graph")
    return {prop.key: prop.value for prop in model.metadata_props}


def read_metadata(path: Path) -> ExportMetadata:
    """The covseg metadata of an exported ONNX file; one-line error when it has none."""
    props = read_metadata_props(path)
    if not has_covseg_metadata(props):
        raise CovsegError(f"{path} has no covseg metadata (it was not exported by `covseg export`)")
    return ExportMetadata.from_props(props, str(path))
