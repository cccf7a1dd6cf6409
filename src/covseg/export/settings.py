"""What an export can be asked for and its defaults: plain values, so ``covseg export --help`` shows
them without loading torch (:mod:`covseg.export.onnx_export` does the work)."""

from __future__ import annotations

from typing import Literal

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
