"""Inference with onnxruntime: sessions, preprocessing as in training, cases in, labels and reports out.

- :mod:`covseg.inference.session`: :class:`OnnxSegmenter` (providers, options, I/O binding)
- :mod:`covseg.inference.predict`: :func:`load_segmenter`, :func:`resolve_settings`, :func:`predict_slices`
- :mod:`covseg.inference.inputs`: :func:`discover_cases`, :func:`read_case`
- :mod:`covseg.inference.cases`: :func:`run_case` (labels, overlays, report of one case)
- :mod:`covseg.inference.report`: :func:`measure_lesions` and the CSV/JSON report
"""

from covseg.inference.cases import run_case
from covseg.inference.inputs import discover_cases, read_case
from covseg.inference.predict import load_segmenter, predict_slices, resolve_settings
from covseg.inference.report import LesionReport, measure_lesions
from covseg.inference.session import OnnxSegmenter

__all__ = [
    "LesionReport",
    "OnnxSegmenter",
    "discover_cases",
    "load_segmenter",
    "measure_lesions",
    "predict_slices",
    "read_case",
    "resolve_settings",
    "run_case",
]
