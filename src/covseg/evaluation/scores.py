"""A scored set of slices: metrics, bootstrap intervals and the per-slice confusions behind both.

A run keeps the per-slice confusion matrices of what it scored in ``slice_confusions.json``
(:data:`covseg.runs.SLICE_CONFUSIONS`), plain JSON read back without pickle, so that any interval
can be recomputed (and seeds combined) later::

    {"format": "covseg-slice-confusions-1", "class_names": ["background", ...],
     "sets": {"validation": {"ids": ["medseg_004", ...], "confusions": [[[n00, n01, ...], ...], ...]},
              "test": {...}}}

``confusions[i][t][p]``: pixels of slice ``ids[i]`` whose truth is class t and prediction class p.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covseg.core.errors import CovsegError
from covseg.evaluation.bootstrap import Interval, bootstrap_intervals
from covseg.evaluation.metrics import compute_metrics
from covseg.files import json_text, read_json_object, write_text

FORMAT = "covseg-slice-confusions-1"
VALIDATION, TEST = "validation", "test"


@dataclass
class Score:
    """``ids`` (N slices), their confusions (N, C, C) int64, the metrics of their sum and intervals."""

    ids: list[str]
    confusions: np.ndarray
    metrics: dict[str, float]
    intervals: dict[str, Interval | None]

    @classmethod
    def of(cls, ids: Sequence[str], confusions: np.ndarray,
           class_names: Sequence[str] | None = None) -> Score:
        """Metrics of the summed confusion and their bootstrap intervals over the slices; per-class
        metrics named by ``class_names`` (the label set, default
        :func:`~covseg.evaluation.metrics.default_class_names`)."""
        confusions = np.asarray(confusions, dtype=np.int64)
        if confusions.ndim != 3 or len(confusions) != len(ids) or not len(ids):
            raise CovsegError(f"a score needs one (C, C) confusion per slice: {len(ids)} id(s), "
                              f"confusions of shape {confusions.shape}")
        return cls(list(ids), confusions, compute_metrics(confusions.sum(axis=0), class_names=class_names),
                   bootstrap_intervals(confusions, class_names=class_names))

    def summary(self, what: str, **extra: Any) -> dict[str, Any]:
        """The block summary.json holds: what was scored, how many slices, metrics, intervals."""
        return {"what": what, **extra, "slices": len(self.ids), "metrics": dict(self.metrics),
                "intervals": {name: list(interval) if interval else None
                              for name, interval in self.intervals.items()}}


def write_slice_confusions(path: Path, class_names: Sequence[str], scores: Mapping[str, Score]) -> None:
    """Write the per-slice confusions of ``scores`` (by set name) atomically."""
    record = {
        "format": FORMAT,
        "class_names": list(class_names),
        "sets": {name: {"ids": list(score.ids), "confusions": score.confusions.tolist()}
                 for name, score in scores.items()},
    }
    write_text(path, json_text(record, indent=None) + "\n")  # compact: C x C integers per slice


def read_slice_confusions(path: Path) -> dict[str, tuple[list[str], np.ndarray]]:
    """The sets of a slice_confusions.json: name -> (ids, (N, C, C) int64); one-line errors."""
    path = Path(path)
    record = read_json_object(path)
    if record.get("format") != FORMAT:
        raise CovsegError(f"{path} is not a covseg slice-confusions file (no '{FORMAT}' format tag)")
    sets = record.get("sets")
    classes = len(record.get("class_names") or [])
    if not isinstance(sets, dict):
        raise CovsegError(f"{path}: 'sets' must be a table of scored sets")
    result = {}
    for name, item in sets.items():
        ids = item.get("ids") if isinstance(item, dict) else None
        if not isinstance(ids, list) or not all(isinstance(slice_id, str) for slice_id in ids):
            raise CovsegError(f"{path}: sets.{name}.ids must be a list of slice ids")
        try:
            confusions = np.asarray(item.get("confusions"))
        except (TypeError, ValueError, OverflowError):
            confusions = np.asarray(None)
        if not ids and confusions.size == 0:
            confusions = np.zeros((0, classes, classes), dtype=np.int64)
        if not np.issubdtype(confusions.dtype, np.integer):
            raise CovsegError(f"{path}: sets.{name}.confusions must hold integer pixel counts")
        confusions = confusions.astype(np.int64)
        if confusions.shape != (len(ids), classes, classes) or (confusions < 0).any():
            raise CovsegError(f"{path}: sets.{name}.confusions must be {len(ids)} non-negative {classes}x"
                              f"{classes} matrices, got shape {confusions.shape}")
        result[str(name)] = (ids, confusions)
    return result
