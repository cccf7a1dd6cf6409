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
- labels: :class:`LabelSet` (a data set's classes, mask value = index), :data:`MEDSEG_LABELS`
  (the default), :data:`CLASS_NAMES` (its names), :data:`NUM_CLASSES`, :func:`to_labels`,
  :func:`parse_mask_values`, :func:`check_mask_values`, :func:`parse_labels` and
  :data:`LABELS_OPTION` / :data:`LABELS_HELP` (the ``labels`` dataset option);
- dataset options: :func:`check_known`, :func:`int_option`, :func:`option_name` (the option that
  sets them, to name in advice: ``--dataset-option``, or ``--test-dataset-option`` for the test data);
- intensities: :func:`interpret_intensities` (the one decision of what stored values mean:
  Hounsfield units or 8-bit grey levels, offsets, NaN), :class:`IntensityChoice`,
  :class:`Intensities`, :class:`Storage`, :data:`INTENSITY_OPTIONS` (the dataset options
  ``intensity``, ``hu_offset``, ``nan``);
- readers: :func:`read_image` and :func:`read_mask` (PNG/TIFF/WebP/NPY/2-D NIfTI slices; lossy
  masks refused), :data:`PIL_SUFFIXES`, :func:`read_ct_volume`, :func:`read_label_volume`,
  :func:`read_mask_volume`, :func:`display_spacing`, :func:`is_nifti`, :func:`nifti_stem` (NIfTI
  volumes in display orientation);
- :mod:`covseg.plugins.layers` (shared network blocks) and :mod:`covseg.plugins.pretrained`
  (ImageNet weights through timm and torchvision, offline-safe, never unpickling code).

Importing this module imports no torch: plugin modules are imported at every start, also by
``covseg models``; import torch, timm, torchvision and ``covseg.plugins.layers`` inside factories.
"""

from covseg import CLASS_NAMES
from covseg.core.entries import (
    MEDSEG_LABELS,
    CTSlices,
    DatasetEntry,
    LabelSet,
    LoggerEntry,
    LossEntry,
    MetricEntry,
    ModelEntry,
    SlicePrediction,
    ValidationSamples,
)
from covseg.core.errors import CovsegError
from covseg.core.hookspecs import hookimpl
from covseg.data.interpret import OPTION_HELP as INTENSITY_OPTIONS
from covseg.data.interpret import Intensities, IntensityChoice, Storage, interpret_intensities
from covseg.data.labels import (
    LABELS_HELP,
    LABELS_OPTION,
    NUM_CLASSES,
    check_mask_values,
    parse_labels,
    parse_mask_values,
    to_labels,
)
from covseg.data.nifti import (
    display_spacing,
    is_nifti,
    nifti_stem,
    read_ct_volume,
    read_label_volume,
    read_mask_volume,
)
from covseg.data.options import check_known, int_option, option_name
from covseg.data.slice_files import PIL_SUFFIXES, read_image, read_mask
from covseg.visualize import overlay, side_by_side

__all__ = [
    "CLASS_NAMES",
    "INTENSITY_OPTIONS",
    "LABELS_HELP",
    "LABELS_OPTION",
    "MEDSEG_LABELS",
    "NUM_CLASSES",
    "PIL_SUFFIXES",
    "CTSlices",
    "CovsegError",
    "DatasetEntry",
    "Intensities",
    "IntensityChoice",
    "LabelSet",
    "LoggerEntry",
    "LossEntry",
    "MetricEntry",
    "ModelEntry",
    "SlicePrediction",
    "Storage",
    "ValidationSamples",
    "check_known",
    "check_mask_values",
    "display_spacing",
    "hookimpl",
    "int_option",
    "interpret_intensities",
    "is_nifti",
    "nifti_stem",
    "option_name",
    "overlay",
    "parse_labels",
    "parse_mask_values",
    "read_ct_volume",
    "read_image",
    "read_label_volume",
    "read_mask",
    "read_mask_volume",
    "side_by_side",
    "to_labels",
]
