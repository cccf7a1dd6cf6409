"""PyTorch -> ONNX: :func:`export_onnx` and its parts, checked against PyTorch before anything is written.

The metadata an export carries and the onnxruntime session that checks it live in :mod:`covseg.onnx`
(shared with :mod:`covseg.inference`, which this package never imports). The names below load
:mod:`covseg.export.onnx_export`, and torch with it, when first used (PEP 562), so that the
command line can read :mod:`covseg.export.settings` without either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from covseg.export.onnx_export import (
        ExportResult,
        ExportSource,
        export_model,
        export_onnx,
        load_export_source,
    )

__all__ = ["ExportResult", "ExportSource", "export_model", "export_onnx", "load_export_source"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from covseg.export import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
