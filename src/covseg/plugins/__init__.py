"""covseg's plugin surface: everything a plugin imports from covseg, and the only part it should.

Like pytest's ``pytest`` (public) and ``_pytest`` (private), ``covseg.plugins`` is the documented,
stable surface for plugin authors; the rest of covseg (``covseg.core``, ``covseg.data``, ...) is
importable but internal and may change. covseg's own built-in plugins use only this::

    from covseg.plugins import ModelEntry, hookimpl

- hooks and entries: :data:`hookimpl`, :class:`ModelEntry`, :class:`DatasetEntry`,
  :class:`MetricEntry`, :class:`LossEntry`, :class:`LoggerEntry`, :class:`CTSlices`,
  :class:`CovsegError` (the hooks' manual is :mod:`covseg.core.hookspecs`);
- what the lifecycle hooks receive: :class:`ValidationSamples`, :class:`SlicePrediction`, and
  :func:`side_by_side` / :func:`overlay` (image | truth | prediction pictures, RGB uint8);
- labels: :data:`CLASS_NAMES` (mask value = index), :data:`NUM_CLASSES`, :func:`to_labels`,
  :func:`parse_mask_values`;
- dataset options: :func:`check_known`, :func:`int_option`;
- readers: :func:`read_pixels` (PNG/JPG/TIFF/NPY/2-D NIfTI slices), :data:`PIL_SUFFIXES`,
  :func:`read_volume`, :func:`read_label_volume`, :func:`display_spacing`, :func:`is_nifti`,
  :func:`nifti_stem` (NIfTI volumes in display orientation);
- :mod:`covseg.plugins.layers` (shared network blocks) and :mod:`covseg.plugins.pretrained`
  (ImageNet weights through timm and torchvision, offline-safe, never unpickling code).

Importing this module imports no torch: plugin modules are imported at every start, also by
``covseg models``; import torch, timm, torchvision and ``covseg.plugins.layers`` inside factories.
"""

from covseg import CLASS_NAMES
from covseg.core.entries import (
    CTSlices,
    DatasetEntry,
    LoggerEntry,
    LossEntry,
    MetricEntry,
    ModelEntry,
    SlicePrediction,
    ValidationSamples,
)
from covseg.core.errors import CovsegError
from covseg.core.hookspecs import hookimpl
from covseg.data.labels import NUM_CLASSES, parse_mask_values, to_labels
from covseg.data.nifti import display_spacing, is_nifti, nifti_stem, read_label_volume, read_volume
from covseg.data.options import check_known, int_option
from covseg.data.slice_files import PIL_SUFFIXES, read_pixels
from covseg.visualize import overlay, side_by_side

__all__ = [
    "CLASS_NAMES",
    "NUM_CLASSES",
    "PIL_SUFFIXES",
    "CTSlices",
    "CovsegError",
    "DatasetEntry",
    "LoggerEntry",
    "LossEntry",
    "MetricEntry",
    "ModelEntry",
    "SlicePrediction",
    "ValidationSamples",
    "check_known",
    "display_spacing",
    "hookimpl",
    "int_option",
    "is_nifti",
    "nifti_stem",
    "overlay",
    "parse_mask_values",
    "read_label_volume",
    "read_pixels",
    "read_volume",
    "side_by_side",
    "to_labels",
]
