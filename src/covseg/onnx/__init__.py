"""An exported covseg model as a file: the onnxruntime session that runs it and the metadata it carries.

The one package that both sides share: :mod:`covseg.export` (PyTorch -> ONNX) writes the metadata
and checks its exports with the session; :mod:`covseg.inference` (ONNX -> labels) runs the session
and reads the metadata. Neither imports the other, and nothing here imports torch.

- :mod:`covseg.onnx.session`: :class:`OnnxSegmenter` (providers, session options, I/O binding)
- :mod:`covseg.onnx.metadata`: :class:`ExportMetadata` (the ``covseg.*`` ``metadata_props``),
  :func:`read_metadata`
"""

from covseg.onnx.metadata import ExportMetadata, has_covseg_metadata, read_metadata
from covseg.onnx.session import OnnxSegmenter, cpu_cores

__all__ = ["ExportMetadata", "OnnxSegmenter", "cpu_cores", "has_covseg_metadata", "read_metadata"]
