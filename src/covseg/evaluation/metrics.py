"""Runs every registered metric plugin on one confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from covseg import CLASS_NAMES
from covseg.core.errors import CovsegError
from covseg.core.registry import Registry, get_registry
from covseg.files import one_line


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a confusion whose label set is not known: MedSeg's four when it has four classes
    (every run before label sets were recorded), else ``class-<i>``."""
    if num_classes == len(CLASS_NAMES):
        return CLASS_NAMES
    return tuple(f"class-{index}" for index in range(num_classes))


def compute_metrics(confusion: np.ndarray, registry: Registry | None = None,
                    class_names: Sequence[str] | None = None) -> dict[str, float]:
    """All metrics of all installed plugins, as one flat dict of floats.

    ``confusion``: (C, C) integer pixel counts, rows truth, columns prediction. A metric returning
    a float is reported under its name (``miou``); one returning C values, one per class, under
    ``name/<class name>`` (``iou/effusion``), the names from ``class_names`` (the label set, in
    mask-value order; default :func:`default_class_names`); one returning a mapping under
    ``name/key``. Scalar metrics come first, each group in name order. NaN means "not defined on
    this data" (e.g. a class absent from prediction and target). ``registry`` defaults to the
    installed plugins; pass one to evaluate with a hand-made set. Raises a one-line
    :class:`CovsegError` for a malformed confusion, names that do not match it, or a broken plugin.
    """
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.shape[0] == 0:
        raise CovsegError(f"compute_metrics: confusion must be a square (C, C) matrix, got {confusion.shape}")
    if not np.issubdtype(confusion.dtype, np.integer):
        raise CovsegError(f"compute_metrics: confusion must hold integer pixel counts, got {confusion.dtype}")
    names = tuple(class_names) if class_names is not None else default_class_names(confusion.shape[0])
    if len(names) != confusion.shape[0]:
        raise CovsegError(f"compute_metrics: {len(names)} class names for a "
                          f"{confusion.shape[0]}-class confusion")
    registry = registry or get_registry()
    scalars: dict[str, float] = {}
    per_key: dict[str, float] = {}
    for provided in registry.provided("metric"):
        entry, plugin = provided.entry, provided.plugin
        try:
            value = entry.compute(confusion.copy())
        except Exception as error:  # any plugin bug: report which plugin broke, in one line
            raise CovsegError(
                f"metric '{entry.name}' of plugin {plugin.package} ({plugin.module}) failed: "
                f"{one_line(error)}"
            ) from error
        if isinstance(value, Mapping):
            for key, item in value.items():
                per_key[f"{entry.name}/{key}"] = _as_float(item, entry.name, plugin.module)
        elif isinstance(value, Sequence | np.ndarray) and np.ndim(value) == 1:
            if len(value) != len(names):
                raise CovsegError(f"metric '{entry.name}' ({plugin.module}) returned {len(value)} values "
                                  f"for {len(names)} classes")
            for name, item in zip(names, value, strict=True):
                per_key[f"{entry.name}/{name}"] = _as_float(item, entry.name, plugin.module)
        else:
            scalars[entry.name] = _as_float(value, entry.name, plugin.module)
    clash = scalars.keys() & per_key.keys()
    if clash:
        raise CovsegError(f"metric name(s) {', '.join(sorted(clash))} are produced twice; rename one metric")
    return {**scalars, **per_key}


def _as_float(value: object, name: str, module: str) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CovsegError(
            f"metric '{name}' ({module}) returned {type(value).__name__}, not a float or a mapping of floats"
        ) from None
