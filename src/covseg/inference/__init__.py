"""Inference with onnxruntime: preprocessing as in training, cases in, labels and reports out.

ONNX -> labels and nothing else: no torch, no OpenCV-based augmentation, nothing from
:mod:`covseg.export` or training. The session and the model's metadata come from :mod:`covseg.onnx`;
``covseg predict RUN_FOLDER`` exports the run in memory first (:mod:`covseg.commands.predict`).

- :mod:`covseg.inference.predict`: :func:`resolve_settings`, :func:`predict_slices` (TTA from
  :mod:`covseg.tta`, probabilities resized back to the native size)
- :mod:`covseg.inference.inputs`: :func:`discover_cases`, :func:`read_case`
- :mod:`covseg.inference.cases`: :func:`run_case` (labels, pictures, report of one case) and
  :class:`PredictOptions`
- :mod:`covseg.inference.postprocess`: lesions restricted to the lung, small lesions removed
- :mod:`covseg.inference.severity`: share of each lung involved, CT severity score
- :mod:`covseg.inference.probabilities`: ``--save-probabilities``
- :mod:`covseg.inference.report`: :func:`measure_lesions`, the CSV/JSON report and ``summary.csv``
- :mod:`covseg.inference.timing`: seconds per stage, for benchmarks
"""

from covseg.inference.cases import PredictOptions, run_case
from covseg.inference.inputs import discover_cases, read_case
from covseg.inference.predict import predict_slices, resolve_settings
from covseg.inference.report import LesionReport, measure_lesions

__all__ = [
    "LesionReport",
    "PredictOptions",
    "discover_cases",
    "measure_lesions",
    "predict_slices",
    "read_case",
    "resolve_settings",
    "run_case",
]
