"""ONNX export of covseg models: :func:`export_onnx` and the metadata that travels with the file."""

from covseg.export.metadata import ExportMetadata, read_metadata
from covseg.export.onnx_export import (
    ExportResult,
    ExportSource,
    export_model,
    export_onnx,
    load_export_source,
)

__all__ = [
    "ExportMetadata",
    "ExportResult",
    "ExportSource",
    "export_model",
    "export_onnx",
    "load_export_source",
    "read_metadata",
]
