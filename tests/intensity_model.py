"""A deterministic covseg ONNX model for reader tests, built with ``onnx.helper`` (no training).

One 1x1 convolution: logits ``2 c x - c^2`` per class centre ``c`` on input channel 0, so the
argmax is the class whose centre is nearest to the windowed intensity ``x``. With the lung window
(-1350..+150 HU) the centres are the model inputs of :data:`CLASS_HU`: below -750 HU background,
-750..-350 ground-glass, -350..-50 consolidation, above -50 effusion. The file carries covseg
metadata, so ``covseg predict`` treats it as a covseg export.

:func:`write_gradient_model` is its mirror-asymmetric sibling for test-time augmentation: the logit
of class 1 is the horizontal gradient of the input, ``x[c + 1] - x[c - 1]`` (zeros beyond the edge),
the other logits are 0. Mirrored left-right and back it becomes ``-(x[c + 1] - x[c - 1])``, so the
flip-averaged softmax is known in closed form.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from covseg import CLASS_NAMES
from covseg.data.intensity import Normalisation
from covseg.onnx import ExportMetadata

CLASS_HU = (-1000.0, -500.0, -200.0, 100.0)
"""The HU each class centre stands for (lung window L-600/W1500)."""


def class_centres() -> np.ndarray:
    """The centres in model-input units [0, 1]: (HU + 1350) / 1500."""
    return (np.asarray(CLASS_HU, np.float32) + 1350.0) / 1500.0


def _save(model: onnx.ModelProto, name: str, image_size: int | None, path: Path) -> Path:
    model.ir_version = 9  # what onnxruntime 1.20+ reads (onnx may default to a newer one)
    metadata = ExportMetadata(name, len(CLASS_NAMES), 3, CLASS_NAMES, Normalisation(), image_size=image_size,
                              trained=True, source="tests/intensity_model.py")
    helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def write_gradient_model(path: Path) -> Path:
    """The gradient model (module docstring) to ``path``; native size."""
    weight = np.zeros((len(CLASS_NAMES), 3, 1, 3), np.float32)
    weight[1, 0, 0] = (-1.0, 0.0, 1.0)  # Conv is a cross-correlation: x[c + 1] - x[c - 1]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight"], ["logits"], pads=[0, 1, 0, 1])],
        "gradient",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(CLASS_NAMES), "h", "w"])],
        [numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return _save(model, "gradient", None, path)


def write_intensity_model(path: Path, image_size: int | None = None) -> Path:
    """Write the model to ``path`` (an .onnx file) and return ``path``; ``image_size``: the trained
    size its metadata states (predict resizes slices to it and the probabilities back)."""
    centres = class_centres()
    weight = np.zeros((len(centres), 3, 1, 1), np.float32)
    weight[:, 0, 0, 0] = 2 * centres
    bias = -(centres**2)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["logits"])],
        "intensity-classifier",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", len(centres), "h", "w"])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias.astype(np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return _save(model, "intensity-classifier", image_size, path)
