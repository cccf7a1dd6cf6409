"""What plugin authors import: the hook marker, the entry records and shared building blocks.

A third-party plugin needs nothing else from covseg::

    from covseg.plugins import ModelEntry, hookimpl
"""

from covseg.core.entries import CTSlices, DatasetEntry, MetricEntry, ModelEntry
from covseg.core.errors import CovsegError
from covseg.core.hookspecs import hookimpl

__all__ = ["CTSlices", "CovsegError", "DatasetEntry", "MetricEntry", "ModelEntry", "hookimpl"]

# Building blocks for dataset plugins: the readers the built-in data sets use, so that a plugin
# reads files, decides intensities and parses options exactly as covseg does.
from covseg import CLASS_NAMES
from covseg.data.interpret import (
    OPTION_HELP as INTENSITY_OPTIONS,
)
from covseg.data.interpret import (
    Intensities,
    IntensityChoice,
    Storage,
    interpret_intensities,
)
from covseg.data.labels import NUM_CLASSES, parse_mask_values, to_labels
from covseg.data.nifti import (
    display_spacing,
    is_nifti,
    nifti_stem,
    read_ct_volume,
    read_label_volume,
    read_mask_volume,
)
from covseg.data.options import check_known, int_option
from covseg.data.slice_files import PIL_SUFFIXES, read_image, read_mask

__all__ += [
    "CLASS_NAMES",
    "INTENSITY_OPTIONS",
    "NUM_CLASSES",
    "PIL_SUFFIXES",
    "Intensities",
    "IntensityChoice",
    "Storage",
    "check_known",
    "display_spacing",
    "int_option",
    "interpret_intensities",
    "is_nifti",
    "nifti_stem",
    "parse_mask_values",
    "read_ct_volume",
    "read_image",
    "read_label_volume",
    "read_mask",
    "read_mask_volume",
    "to_labels",
]
