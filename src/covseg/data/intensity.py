"""The one place where slice intensities become model input.

Training, evaluation, ONNX export metadata and prediction all call :func:`to_model_input` with the
:class:`Normalisation` stored in the run's config and checkpoint, so a model always sees its
training intensities.

- Hounsfield units (``intensity="hu"``): each window (level L, width W) clips HU to
  ``[L - W/2, L + W/2]`` and scales that range linearly to [0, 1]. The default is the lung window
  L -600 / W 1500 (-1350..+150 HU: air 0.23, lung 0.33, soft tissue 0.93), replicated to three
  channels. Three windows (e.g. lung, mediastinal, bone) give three different channels.
- 8-bit images (``intensity="uint8"``: PNG-like slices whose intensities were already mapped to
  0..255 by whoever exported them): divided by 255; windows do not apply. Grayscale is replicated
  to three channels, RGB keeps its three channels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from covseg.core.errors import CovsegError

Intensity = Literal["hu", "uint8"]

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinal": (40.0, 400.0),
    "bone": (400.0, 1800.0),
}
"""Named HU windows (level, width) that :meth:`Normalisation.parse` accepts."""


@dataclass(frozen=True)
class Normalisation:
    """HU windows as (level, width): one window replicated to 3 channels, or exactly 3 windows."""

    windows: tuple[tuple[float, float], ...] = (WINDOW_PRESETS["lung"],)

    def __post_init__(self) -> None:
        windows = tuple((float(level), float(width)) for level, width in self.windows)
        if len(windows) not in (1, 3):
            raise CovsegError(f"normalisation needs 1 or 3 HU windows, got {len(windows)}")
        for level, width in windows:
            if not (np.isfinite(level) and np.isfinite(width) and width > 0):
                raise CovsegError(f"HU window level {level} width {width}: width must be a positive number")
        object.__setattr__(self, "windows", windows)

    @property
    def channels(self) -> int:
        """Distinct channels the windows produce (1: replicated to 3 for the model)."""
        return len(self.windows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form stored in run configs, checkpoints and ONNX metadata."""
        return {"windows": [[level, width] for level, width in self.windows]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Normalisation:
        """Inverse of :meth:`to_dict`; a malformed record raises a one-line :class:`CovsegError`."""
        try:
            windows = tuple((float(level), float(width)) for level, width in data["windows"])
        except (KeyError, TypeError, ValueError) as error:
            raise CovsegError(f"normalisation record {dict(data)!r} is malformed: {error}") from None
        return cls(windows)

    @classmethod
    def parse(cls, text: str) -> Normalisation:
        """From a command-line value: ``lung``, ``lung,mediastinal,bone`` or ``-600:1500,40:400,...``."""
        windows = []
        for part in (piece.strip() for piece in text.split(",")):
            if part in WINDOW_PRESETS:
                windows.append(WINDOW_PRESETS[part])
                continue
            level, _, width = part.partition(":")
            try:
                windows.append((float(level), float(width)))
            except ValueError:
                names = ", ".join(WINDOW_PRESETS)
                raise CovsegError(
                    f"window '{part}' is neither a preset ({names}) nor LEVEL:WIDTH in HU"
                ) from None
        return cls(tuple(windows))

    def describe(self) -> str:
        """One line for tables and logs, e.g. ``HU window L-600/W1500 (lung) x3; 8-bit /255``."""
        parts = []
        for window in self.windows:
            label = f"L{window[0]:g}/W{window[1]:g}"
            name = preset_name(window)
            parts.append(f"{label} ({name})" if name else label)
        how = "replicated to 3 channels" if len(self.windows) == 1 else "one per channel"
        return f"HU window {', '.join(parts)} {how}; 8-bit images /255"


def preset_name(window: Sequence[float]) -> str | None:
    """The name of the :data:`WINDOW_PRESETS` entry equal to ``(level, width)`` in HU, else None."""
    level, width = map(float, window)
    return next((name for name, preset in WINDOW_PRESETS.items() if preset == (level, width)), None)


INTENSITY_WORDS: dict[str, str] = {"hu": "Hounsfield units", "uint8": "8-bit grey levels"}
"""What each :data:`Intensity` is called in messages."""


def describe_input(normalisation: Normalisation, trained_on: str | None) -> str:
    """How a model's input is normalised, for banners and model cards: only the branch its training
    data used when that is known (``trained_on``: ``hu``, ``uint8``, or None for models from before
    covseg recorded it, which get both branches)."""
    if trained_on == "uint8":
        return "8-bit images /255 (trained on 8-bit images: no HU window)"
    if trained_on == "hu":
        return normalisation.describe().removesuffix("; 8-bit images /255") + " (trained on Hounsfield units)"
    return normalisation.describe()


def check_input_kind(trained_on: str | None, given: str, where: str, model: str, hint: str = "") -> None:
    """Refuse input whose intensity kind (``hu``/``uint8``) is not the one ``model`` was trained on.

    A model trained on 8-bit grey levels divided by 255 and one trained on windowed HU see
    different numbers for the same tissue: fed the other kind, it still returns labels, and the
    lesion volumes are meaningless. ``trained_on`` None (an older model or foreign ONNX file) is
    not checked. Raises :class:`CovsegError` naming ``where`` and ``model``; ``hint`` ends it (the
    option that says how the input was read, for when covseg read it as the wrong kind).
    """
    if trained_on is None or trained_on == given:
        return
    raise CovsegError(
        f"{where} holds {INTENSITY_WORDS.get(given, given)} but {model} was trained on "
        f"{INTENSITY_WORDS.get(trained_on, trained_on)}: its labels and volumes would be meaningless; "
        f"use a model trained on {INTENSITY_WORDS.get(given, given)}{hint}"
    )


def normalise_channels(image: np.ndarray, intensity: Intensity, normalisation: Normalisation) -> np.ndarray:
    """Float32 (H, W, C) in [0, 1] with C = 1 (to be replicated) or 3 distinct channels.

    :class:`covseg.data.dataset.SliceDataset` keeps this compact form in memory (a third of the
    memory and augmentation work for grayscale slices) and replicates channels last.
    """
    if intensity == "uint8":
        if image.ndim == 2:
            image = image[:, :, None]
        elif not (image.ndim == 3 and image.shape[2] == 3):
            raise CovsegError(f"8-bit image of shape {image.shape}: expected (H, W) or (H, W, 3)")
        return np.clip(image.astype(np.float32) / 255.0, 0.0, 1.0)
    if intensity != "hu":
        raise CovsegError(f"intensity '{intensity}' is not one of 'hu', 'uint8'")
    if image.ndim != 2:
        raise CovsegError(f"Hounsfield image of shape {image.shape}: expected one channel (H, W)")
    hu = image.astype(np.float32, copy=False)
    channels = []
    for level, width in normalisation.windows:
        low = level - width / 2.0
        channels.append(np.clip((hu - low) * np.float32(1.0 / width), 0.0, 1.0))
    return np.stack(channels, axis=-1)


def to_model_input(image: np.ndarray, intensity: Intensity, normalisation: Normalisation) -> np.ndarray:
    """Float32 (H, W, 3) in [0, 1]: the model input of one slice (see the module docstring)."""
    channels = normalise_channels(image, intensity, normalisation)
    if channels.shape[2] == 1:
        channels = np.repeat(channels, 3, axis=2)
    return np.ascontiguousarray(channels)
