"""What an export can be asked for and its defaults: plain values, so ``covseg export --help`` shows
them without loading torch (:mod:`covseg.export.onnx_export` does the work)."""

from __future__ import annotations

import math
from typing import Literal

from covseg.core.errors import CovsegError

Exporter = Literal["torchscript", "dynamo"]
EXPORTERS: tuple[str, ...] = ("torchscript", "dynamo")
DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-3
"""Largest allowed |logit| difference onnxruntime vs PyTorch, times the largest |logit| when > 1."""
DEFAULT_TRACE_SIZE = 64
MIN_SIZE = 32
"""Smallest image side covseg's models take (every model takes H, W >= 32)."""
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
"""The graph's dynamic dimensions, named: batch, height and width of input and logits."""


def check_export_options(trace_size: int | None, tolerance: float) -> None:
    """Refuse a trace size under :data:`MIN_SIZE` or a tolerance that is not a positive finite
    number, in one line naming the option; the command calls it before it loads any model."""
    if trace_size is not None and trace_size < MIN_SIZE:
        raise CovsegError(f"--image-size {trace_size}: models take at least {MIN_SIZE}x{MIN_SIZE} pixels")
    if not (tolerance > 0 and math.isfinite(tolerance)):
        raise CovsegError(f"--tolerance {tolerance:g}: must be a positive number")
