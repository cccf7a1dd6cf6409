"""Slices in, labels out: model settings, preprocessing as in training, batched onnxruntime runs.

Each slice is normalised (:func:`covseg.data.intensity.normalise_channels`), resized to the
model's training size with :func:`covseg.data.transforms.resize_image` (the resize
:class:`covseg.data.dataset.SliceDataset` applies in training), run through onnxruntime in
batches (with ``--tta flips``, once per flip of :mod:`covseg.tta`), and the softmax probabilities
are resized back (bilinear) to the slice's native size before the argmax, so a label volume
matches its input exactly and its lesion edges are as smooth as the probabilities. Nothing here
imports torch: the model is an ONNX file (:mod:`covseg.onnx`); exporting a run first is the
command's business (``covseg predict RUN``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from covseg.core.entries import check_class_names
from covseg.core.errors import CovsegError
from covseg.data.intensity import Intensity, Normalisation, normalise_channels
from covseg.data.orientation import DISPLAY_ORIENTATION
from covseg.data.transforms import resize_image
from covseg.inference.timing import NO_TIMER, StageTimer
from covseg.onnx import ExportMetadata, OnnxSegmenter
from covseg.tta import flip_set, mean_over_flips


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
    trained_on: str | None = None
    """What the model was trained on (``hu``/``uint8``, its metadata's ``intensity``): input of
    the other kind is refused (:func:`covseg.data.intensity.check_input_kind`); None: unknown."""


def parse_classes(text: str) -> tuple[str, ...]:
    """``--classes background,ground-glass,...`` -> the names, background (label 0) first.

    Raises :class:`CovsegError` for fewer than two names, or names that
    :func:`covseg.core.entries.check_class_names` refuses (repeated, not a name, or one covseg
    derives itself such as ``all-lesions``).
    """
    names = tuple(part.strip() for part in text.split(","))
    if len(names) < 2 or not all(names):
        raise CovsegError(
            f"--classes {text}: give two or more distinct names separated by commas, "
            "label 0 (background) first"
        )
    try:
        check_class_names(names)
    except ValueError as error:
        raise CovsegError(f"--classes {text}: {error}") from None
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
    trained_on = metadata.intensity if metadata is not None else None
    return ModelSettings(class_names, normalisation, image_size, in_channels, scale_8bit, description,
                         orientation=orientation, trained_on=trained_on)


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


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C, H, W) float32 from logits (N, C, H, W), over axis 1.

    A NaN logit never wins: it counts as -inf (+inf as the largest float32), so a pixel with some
    NaN logits takes its probabilities from the others, and a pixel whose logits are all NaN gets
    probability 0 for every class (background by argmax), as the labels of NaN logits always had.
    """
    finfo = np.finfo(np.float32)
    scores = np.nan_to_num(
        logits.astype(np.float32, copy=False), nan=-np.inf, posinf=finfo.max, neginf=-np.inf
    )
    top = scores.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore"):  # all -inf: (-inf) - (-inf) is NaN, set to 0 below
        exponentials = np.exp(scores - top)
        probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
    return np.nan_to_num(probabilities, nan=0.0, copy=False)


def _flip(batch: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    return np.flip(batch, axis=axes)


OPENCV_CHANNELS = {"area": 4, "linear": 128}
"""Channels per ``cv2.resize`` call that OpenCV 4/5 accepts for each interpolation."""


def native_probabilities(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Probabilities (N, C, h, w) resized to ``size`` = (H, W): (N, C, H, W) float32.

    :func:`covseg.data.transforms.resize_image` does the resizing: bilinear when enlarging (a model
    trained at 128 px gives smooth lesion edges at 512 px, not 4x4 staircases), area when shrinking.
    The N x C maps go through OpenCV as the channels of a few calls: at most
    :data:`OPENCV_CHANNELS` each (OpenCV's area resize takes 4, its linear one fewer than 256).
    """
    count, classes, height, width = probabilities.shape
    if (height, width) == tuple(size):
        return probabilities
    shrinking = size[0] < height and size[1] < width
    per_call = OPENCV_CHANNELS["area" if shrinking else "linear"]
    maps = probabilities.reshape(count * classes, height, width)
    resized = [
        resize_image(np.ascontiguousarray(maps[start : start + per_call].transpose(1, 2, 0)), size)
        for start in range(0, len(maps), per_call)
    ]
    return np.concatenate(resized, axis=2).transpose(2, 0, 1).reshape(count, classes, *size)


ProbabilityCallback = Callable[[int, np.ndarray], None]
"""``on_probabilities(first, probabilities)``: slices ``first``.. of the batch, (n, C, H, W) float32
class probabilities at the native size (softmax, averaged over the TTA flips)."""


def predict_slices(
    segmenter: OnnxSegmenter,
    slices: Sequence[np.ndarray],
    intensity: Intensity,
    settings: ModelSettings,
    batch_size: int = 8,
    where: str = "input",
    on_batch: Callable[[int], None] | None = None,
    *,
    tta: str = "none",
    on_probabilities: ProbabilityCallback | None = None,
    timer: StageTimer = NO_TIMER,
) -> np.ndarray:
    """Labels (Z, H, W) uint8 at each slice's native size, predicted in batches of ``batch_size``.

    Per batch: model input at the trained size (:func:`model_input`), logits from onnxruntime,
    softmax (averaged over the flips of ``tta``, :mod:`covseg.tta`), the probabilities resized back
    to the native size (:func:`native_probabilities`), then the argmax. ``on_probabilities`` gets
    those native-size probabilities batch by batch (``--save-probabilities``); ``timer`` records the
    seconds of each stage (``benchmarks/volume_speed.py``). Raises
    :class:`CovsegError` for a batch size below 1 or logits with another number of classes than
    ``settings.class_names``.
    """
    if batch_size < 1:
        raise CovsegError(f"--batch-size {batch_size}: must be at least 1")
    flips = flip_set(tta)
    fixed_batch = segmenter.input.shape[0] if isinstance(segmenter.input.shape[0], int) else None
    step = fixed_batch or batch_size
    native = slices[0].shape[:2]
    labels = np.zeros((len(slices), *native), dtype=np.uint8)
    classes = len(settings.class_names)

    def probabilities(batch: np.ndarray) -> np.ndarray:
        with timer.stage("inference"):
            logits = segmenter.logits(batch)
        if logits.shape[1] != classes:
            raise CovsegError(
                f"{segmenter.origin} returned {logits.shape[1]} classes for {classes} class names"
            )
        with timer.stage("softmax, resize back, argmax"):
            return softmax(logits)

    for start in range(0, len(slices), step):
        chunk = slices[start : start + step]
        with timer.stage("normalise, resize"):
            batch = np.stack([model_input(slice_, intensity, settings, where) for slice_ in chunk])
            if fixed_batch and len(batch) < fixed_batch:  # a graph with a fixed batch: pad the last one
                padding = np.zeros((fixed_batch - len(batch), *batch.shape[1:]), batch.dtype)
                batch = np.concatenate([batch, padding])
        averaged = mean_over_flips(probabilities, batch, flips, _flip)[: len(chunk)]
        with timer.stage("softmax, resize back, argmax"):
            at_native = native_probabilities(averaged, native)
            labels[start : start + len(chunk)] = at_native.argmax(axis=1)
        if on_probabilities is not None:
            with timer.stage("keep probabilities"):
                on_probabilities(start, at_native)
        if on_batch is not None:
            on_batch(len(chunk))
    return labels
