"""Test-time augmentation: the flip sets, as data, and the one average both runtimes use.

``--tta flips`` is nnU-Net's test-time mirroring in 2-D (Isensee et al., "nnU-Net: a
self-configuring method for deep learning-based biomedical image segmentation", Nature Methods
18, 203-211 (2021); nnU-Net v1, ``nnunet/network_architecture/neural_network.py``,
``SegmentationNetwork._internal_maybe_mirror_and_pred_2D``): the model sees the slice as it is and
mirrored along each combination of the two image axes (2^2 = 4 passes), each output is mirrored
back, and the softmax probabilities are averaged (nnU-Net v2 averages the logits instead). Mirroring
is exact (no interpolation), so a model that is itself mirror-symmetric gives the same result.

The flips are tuples of axes counted from the end of an (N, C, H, W) array or tensor: ``-1``
mirrors left-right (width), ``-2`` top-bottom (height). :func:`mean_over_flips` takes the flip
function, so ``covseg predict`` (NumPy, onnxruntime) and ``covseg eval`` (torch) run the same loop;
nothing here imports either runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from covseg.core.errors import CovsegError

Batch = TypeVar("Batch")

FLIP_SETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "flips": ((), (-1,), (-2,), (-2, -1)),
}
"""TTA mode -> the flips it averages over (``()`` is the slice as it is)."""

TTA_MODES: tuple[str, ...] = tuple(FLIP_SETS)


def flip_set(mode: str) -> tuple[tuple[int, ...], ...]:
    """The flips of ``mode`` (``none`` or ``flips``); :class:`CovsegError` names the choices otherwise."""
    if mode not in FLIP_SETS:
        raise CovsegError(f"--tta {mode}: expected one of {', '.join(TTA_MODES)}")
    return FLIP_SETS[mode]


def describe(mode: str) -> str:
    """One line for logs and reports, e.g. ``flips (4 passes: as is, left-right, ...)``."""
    names = {(): "as is", (-1,): "left-right", (-2,): "top-bottom", (-2, -1): "both"}
    flips = flip_set(mode)
    if len(flips) == 1:
        return "none (1 pass)"
    return f"{mode} ({len(flips)} passes: {', '.join(names[axes] for axes in flips)}; softmax averaged)"


def mean_over_flips(
    probabilities: Callable[[Batch], Batch],
    batch: Batch,
    flips: tuple[tuple[int, ...], ...],
    flip: Callable[[Batch, tuple[int, ...]], Batch],
) -> Batch:
    """The mean of ``probabilities`` over the flipped batches, each mirrored back.

    ``probabilities``: (N, C, H, W) -> (N, K, H, W) class probabilities (softmax); ``flip(x, axes)``
    mirrors ``x`` along ``axes`` (``np.flip`` or ``torch.flip``). The output must keep the input's
    height and width (every covseg model resizes its logits to the input), else mirroring back
    would not put pixels where they came from.
    """
    total = None
    for axes in flips:
        output = probabilities(flip(batch, axes) if axes else batch)
        output = flip(output, axes) if axes else output
        total = output if total is None else total + output
    return total / len(flips)
