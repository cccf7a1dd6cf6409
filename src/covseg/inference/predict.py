"""Slices in, labels out: model settings, preprocessing as in training, batched onnxruntime runs.

Each slice is normalised (:func:`covseg.data.intensity.normalise_channels`), resized to the
model's training size with :func:`covseg.data.transforms.resize_image` (the resize
:class:`covseg.data.dataset.SliceDataset` applies in training), run through onnxruntime in
batches, and the labels are resized back (nearest) to the slice's native size, so a label volume
matches its input exactly. Nothing here imports torch: the model is an ONNX file
(:mod:`covseg.onnx`); exporting a run first is the command's business (``covseg predict RUN``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from covseg.core.errors import CovsegError
from covseg.data.intensity import Intensity, Normalisation, normalise_channels
from covseg.data.orientation import DISPLAY_ORIENTATION
from covseg.data.transforms import resize_image, resize_labels
from covseg.onnx import ExportMetadata, OnnxSegmenter


@dataclass(frozen=True)
class ModelSettings:
    """How to feed a model and read its output: class names, intensities, input size, channels,
    and the orientation its slices are shown in (:mod:`covseg.data.orientation`)."""

    class_names: tuple[str, ...]
    normalisation: Normalisation
    image_size: tuple[int, int] | None
    in_channels: int
    scale_8bit: bool
    description: str
    orientation: str = DISPLAY_ORIENTATION


def parse_classes(text: str) -> tuple[str, ...]:
    """``--classes background,ground-glass,...`` -> the names, background (label 0) first."""
    names = tuple(part.strip() for part in text.split(","))
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise CovsegError(
            f"--classes {text}: give two or more distinct names separated by commas, "
            "label 0 (background) first"
        )
    return names


def resolve_settings(
    segmenter: OnnxSegmenter,
    metadata: ExportMetadata | None,
    classes: str | None = None,
    window: str | None = None,
    scale_8bit: bool = False,
) -> ModelSettings:
    """The model's own metadata, overridden by ``--classes``/``--window``/``--scale-8bit``.

    A model without covseg metadata needs ``--classes`` and one of ``--window``/``--scale-8bit``;
    the error names exactly what is missing.
    """
    if window is not None and scale_8bit:
        raise CovsegError(
            "--window and --scale-8bit exclude each other: HU volumes take a window, "
            "8-bit data is divided by 255"
        )
    if metadata is None:
        missing = []
        if classes is None:
            missing.append("--classes NAME,NAME,... (label 0 first)")
        if window is None and not scale_8bit:
            missing.append("--window LEVEL:WIDTH (or lung, mediastinal, bone) or --scale-8bit")
        if missing:
            raise CovsegError(f"{segmenter.origin} has no covseg metadata; pass {' and '.join(missing)}")
    class_names = parse_classes(classes) if classes is not None else metadata.class_names
    normalisation = (
        Normalisation.parse(window)
        if window is not None
        else metadata.normalisation
        if metadata is not None
        else Normalisation()
    )
    if segmenter.num_classes is not None and segmenter.num_classes != len(class_names):
        raise CovsegError(
            f"{len(class_names)} class names for {segmenter.origin}, which returns "
            f"{segmenter.num_classes} classes"
        )
    in_channels = segmenter.in_channels or (metadata.in_channels if metadata is not None else None)
    if in_channels is None:
        raise CovsegError(f"{segmenter.origin} does not fix its input channels and has no covseg metadata")
    if in_channels not in (1, 3):
        raise CovsegError(
            f"{segmenter.origin} takes {in_channels} input channels; covseg feeds 3 "
            "(RGB or HU windows) or 1 (one window, grayscale)"
        )
    if in_channels == 1 and normalisation.channels != 1:
        raise CovsegError(
            f"{segmenter.origin} takes 1 input channel but {normalisation.channels} HU "
            "windows were given; use one --window"
        )
    height, width = segmenter.input.shape[2:]
    if isinstance(height, int) and isinstance(width, int):
        image_size = (height, width)  # a graph with a fixed input size
    elif metadata is not None and metadata.image_size:
        image_size = (metadata.image_size, metadata.image_size)
    else:
        image_size = None
    description = metadata.describe() if metadata is not None else f"{segmenter.origin} (no covseg metadata)"
    orientation = metadata.orientation if metadata is not None else DISPLAY_ORIENTATION
    return ModelSettings(class_names, normalisation, image_size, in_channels, scale_8bit, description,
                         orientation=orientation)


def model_input(slice_: np.ndarray, intensity: Intensity, settings: ModelSettings, where: str) -> np.ndarray:
    """One slice as model input (C, h, w) float32 at the model's size."""
    channels = normalise_channels(slice_, intensity, settings.normalisation)
    if settings.image_size is not None:
        channels = resize_image(channels, settings.image_size)
    if settings.in_channels == 1:
        if channels.shape[2] != 1:
            raise CovsegError(f"{where} is a colour image but the model takes 1 (grayscale) channel")
        return np.ascontiguousarray(channels.transpose(2, 0, 1))
    return np.ascontiguousarray(np.broadcast_to(channels, (*channels.shape[:2], 3)).transpose(2, 0, 1))


def predict_slices(
    segmenter: OnnxSegmenter,
    slices: Sequence[np.ndarray],
    intensity: Intensity,
    settings: ModelSettings,
    batch_size: int = 8,
    where: str = "input",
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Labels (Z, H, W) uint8 at each slice's native size, predicted in batches of ``batch_size``."""
    if batch_size < 1:
        raise CovsegError(f"--batch-size {batch_size}: must be at least 1")
    fixed_batch = segmenter.input.shape[0] if isinstance(segmenter.input.shape[0], int) else None
    step = fixed_batch or batch_size
    labels = np.zeros((len(slices), *slices[0].shape[:2]), dtype=np.uint8)
    for start in range(0, len(slices), step):
        chunk = slices[start : start + step]
        batch = np.stack([model_input(slice_, intensity, settings, where) for slice_ in chunk])
        if fixed_batch and len(batch) < fixed_batch:  # a graph with a fixed batch: pad the last one
            padding = np.zeros((fixed_batch - len(batch), *batch.shape[1:]), batch.dtype)
            batch = np.concatenate([batch, padding])
        predicted = segmenter.labels(batch)[: len(chunk)]
        if predicted.max(initial=0) >= len(settings.class_names):
            raise CovsegError(
                f"{segmenter.origin} predicted label {predicted.max()} for "
                f"{len(settings.class_names)} classes"
            )
        for offset, label in enumerate(predicted):
            labels[start + offset] = resize_labels(label, labels.shape[1:])
        if on_batch is not None:
            on_batch(len(chunk))
    return labels

