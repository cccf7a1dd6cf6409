"""Confidence intervals over slices: the percentile bootstrap of every metric.

Method: the percentile interval of Efron & Tibshirani (1993), *An Introduction to the Bootstrap*,
Chapman & Hall, chapter 13 ("Confidence intervals based on bootstrap percentiles"). From the N
scored slices, draw B resamples of N slices with replacement (seeded); compute every metric on
each resample; the interval is the ((1 - confidence) / 2, (1 + confidence) / 2) percentiles of
the B values (linear interpolation, ``numpy.percentile``'s default).

A resample's metrics are computed exactly as covseg computes any metric: every metric plugin
(:func:`~covseg.evaluation.metrics.compute_metrics`) on one confusion matrix, here the sum of the
resampled slices' matrices (a slice drawn twice counts twice). That is why runs keep one C x C
matrix per slice (:mod:`covseg.evaluation.scores`): any resample is a weighted sum.

The unit resampled is the slice, not the pixel: pixels of a slice are strongly correlated, and
resampling them would give intervals far too narrow. Slices are treated as independent; slices of
one patient are not quite, so on data with several slices per patient the interval is, if
anything, still too narrow. A resample in which a class is absent from truth and prediction gives
that class's IoU/Dice NaN; the interval is taken over the resamples that define the metric.

Several seeds (``confusions`` of shape (S, N, C, C), the same N slices for every seed): each
resample draws the same slices for every seed and its value is the mean over the seeds (NaN left
out), so the interval is that of the seed-averaged figure a benchmark reports. With S = 1 it is
exactly the interval of the single run.

Cost: one ``compute_metrics`` per resample and seed (benchmarks/bootstrap_cost.py measures it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from covseg.core.errors import CovsegError
from covseg.core.registry import Registry, get_registry
from covseg.evaluation.metrics import compute_metrics

RESAMPLES = 1000
SEED = 0
CONFIDENCE = 0.95
SOURCE = "Efron & Tibshirani 1993, An Introduction to the Bootstrap, ch. 13 (percentile interval)"

Interval = tuple[float, float]


def settings() -> dict[str, Any]:
    """How covseg's intervals are made (stored beside them in summary.json and results.json)."""
    return {"method": "percentile bootstrap over slices", "resamples": RESAMPLES, "seed": SEED,
            "confidence": CONFIDENCE, "source": SOURCE}


def bootstrap_intervals(
    confusions: np.ndarray,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    registry: Registry | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Interval | None]:
    """Percentile bootstrap interval of every metric, by metric name (see the module docstring).

    ``confusions``: per-slice confusion matrices, (N, C, C) for one model or (S, N, C, C) for S
    seeds scored on the same N slices; integer pixel counts. Returns ``{name: (low, high)}``, None
    for a metric that no resample defines; per-class metrics are named by ``class_names`` as in
    :func:`~covseg.evaluation.metrics.compute_metrics`. Raises :class:`CovsegError` for an empty or malformed
    array or a confidence outside (0, 1).
    """
    stack = _as_stack(confusions)
    _check_settings(resamples, confidence)
    registry = registry or get_registry()
    seeds, count = stack.shape[:2]
    generator = np.random.default_rng(seed)
    values: dict[str, np.ndarray] = {}  # metric -> (resamples, seeds)
    for index in range(resamples):
        weights = np.bincount(generator.integers(0, count, count), minlength=count).astype(np.int64)
        for member in range(seeds):
            metrics = compute_metrics(np.tensordot(weights, stack[member], axes=1), registry, class_names)
            for name, value in metrics.items():
                if name not in values:
                    values[name] = np.full((resamples, seeds), np.nan)
                values[name][index, member] = value
    tail = 100.0 * (1.0 - confidence) / 2.0
    intervals: dict[str, Interval | None] = {}
    for name, table in values.items():
        samples = _mean_defined(table)
        defined = samples[np.isfinite(samples)]
        if defined.size == 0:
            intervals[name] = None
            continue
        low, high = np.percentile(defined, [tail, 100.0 - tail])
        intervals[name] = (float(low), float(high))
    return intervals


def paired_difference(
    first: np.ndarray,
    second: np.ndarray,
    metric: str = "miou",
    resamples: int = RESAMPLES,
    seed: int = SEED,
    confidence: float = CONFIDENCE,
    registry: Registry | None = None,
    class_names: Sequence[str] | None = None,
) -> tuple[float, Interval | None]:
    """``metric`` of ``first`` minus that of ``second``, and its paired percentile bootstrap interval.

    ``first`` and ``second``: per-slice confusions, (N, C, C) or (S, N, C, C) (S seeds, averaged as
    in :func:`bootstrap_intervals`), of two models scored on the same N slices in the same order.
    Each resample draws the same slices for both models, so what the slices share (a hard slice is
    hard for both) cancels, and the interval is that of the difference itself: narrower, and the
    right test, where two separate intervals that overlap say little (Efron & Tibshirani 1993,
    ch. 13, applied to the paired difference). Returns the difference on all N slices and the
    interval (None when no resample defines the metric for both). Raises :class:`CovsegError` for
    malformed arrays, different slice counts or classes, or an unknown metric.
    """
    one, two = _as_stack(first), _as_stack(second)
    if one.shape[1:] != two.shape[1:]:
        raise CovsegError(f"bootstrap: the two models must be scored on the same slices and classes, got "
                          f"(N, C, C) {one.shape[1:]} and {two.shape[1:]}")
    _check_settings(resamples, confidence)
    registry = registry or get_registry()

    def value(stack: np.ndarray, weights: np.ndarray) -> float:
        values = [compute_metrics(np.tensordot(weights, member, axes=1), registry, class_names)
                  for member in stack]
        if metric not in values[0]:
            raise CovsegError(f"bootstrap: unknown metric '{metric}' (known: {', '.join(values[0])})")
        return float(_mean_defined(np.array([[item[metric] for item in values]]))[0])

    count = one.shape[1]
    everything = np.ones(count, dtype=np.int64)
    difference = value(one, everything) - value(two, everything)
    generator = np.random.default_rng(seed)
    samples = np.array([value(one, weights) - value(two, weights) for weights in
                        (np.bincount(generator.integers(0, count, count), minlength=count).astype(np.int64)
                         for _ in range(resamples))])
    defined = samples[np.isfinite(samples)]
    if defined.size == 0:
        return difference, None
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(defined, [tail, 100.0 - tail])
    return difference, (float(low), float(high))


def _as_stack(confusions: np.ndarray) -> np.ndarray:
    """Per-slice confusions as (S, N, C, C) integers; one-line errors for anything else."""
    stack = np.asarray(confusions)
    if stack.ndim == 3:
        stack = stack[None]
    if stack.ndim != 4 or stack.shape[2] != stack.shape[3] or stack.shape[1] == 0:
        raise CovsegError(f"bootstrap: expected per-slice confusions (N, C, C) or (S, N, C, C) with N >= 1, "
                          f"got shape {np.shape(confusions)}")
    if not np.issubdtype(stack.dtype, np.integer):
        raise CovsegError(f"bootstrap: confusions must hold integer pixel counts, got {stack.dtype}")
    return stack


def _check_settings(resamples: int, confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise CovsegError(f"bootstrap: confidence {confidence} must be between 0 and 1")
    if resamples < 1:
        raise CovsegError(f"bootstrap: {resamples} resamples; at least 1 is needed")


def _mean_defined(table: np.ndarray) -> np.ndarray:
    """Each row's mean over the seeds that define the metric (NaN where none does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row: its mean is NaN, as meant
        return np.nanmean(table, axis=1)


def overlap(first: Interval | None, second: Interval | None) -> bool:
    """Whether two intervals share a value; an unknown interval overlaps everything (no claim)."""
    if first is None or second is None:
        return True
    return first[0] <= second[1] and second[0] <= first[1]
