"""onnxruntime I/O binding, run through the CPU provider: the code path CUDA takes, with CPU buffers.

:meth:`OnnxSegmenter.logits` binds the input and output on every provider; on a GPU the buffers
live on the device (``"cuda"``), here on the host (``"cpu"``). The graph is a 1x1 convolution
whose exact output numpy computes, so shapes and values are checked for batches of several sizes
in turn through one binding.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from covseg.onnx import OnnxSegmenter

CLASSES, CHANNELS = 4, 3


def conv_model(weight: np.ndarray, bias: np.ndarray) -> bytes:
    """An ONNX graph ``image`` (N, 3, H, W) -> ``logits`` (N, 4, H, W), all four dims dynamic."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["logits"], kernel_shape=[1, 1])],
        "conv1x1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", CHANNELS, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES, "H", "W"])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


@pytest.fixture
def segmenter_and_reference():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(CLASSES, CHANNELS, 1, 1)).astype(np.float32)
    bias = rng.normal(size=CLASSES).astype(np.float32)

    def reference(batch: np.ndarray) -> np.ndarray:
        return np.einsum("oc,nchw->nohw", weight[:, :, 0, 0], batch) + bias[None, :, None, None]

    return OnnxSegmenter(conv_model(weight, bias), device="cpu", threads=1), reference


def test_one_binding_serves_batches_of_different_sizes(segmenter_and_reference, monkeypatch):
    segmenter, reference = segmenter_and_reference
    assert segmenter.provider == "CPUExecutionProvider" and not segmenter.on_gpu
    calls = []
    real_run = segmenter.session.run_with_iobinding

    def counted(binding, *args):
        calls.append(binding)
        return real_run(binding, *args)

    monkeypatch.setattr(segmenter.session, "run_with_iobinding", counted)
    monkeypatch.setattr(segmenter.session, "run", lambda *args, **kwargs: pytest.fail("ran without binding"))
    rng = np.random.default_rng(1)
    for shape in [(2, 3, 64, 64), (1, 3, 33, 47), (5, 3, 64, 64), (1, 3, 32, 32)]:
        batch = rng.random(shape, dtype=np.float32)
        logits = segmenter.logits(batch)
        assert logits.shape == (shape[0], CLASSES, *shape[2:]) and logits.dtype == np.float32
        np.testing.assert_allclose(logits, reference(batch), rtol=1e-5, atol=1e-5)
        assert segmenter.labels(batch).shape == (shape[0], *shape[2:])
    assert len(calls) == 8 and all(binding is segmenter.binding for binding in calls)


def test_the_output_is_the_callers_to_keep(segmenter_and_reference):
    """Each call returns its own host array: a later batch neither overwrites nor resizes it."""
    segmenter, reference = segmenter_and_reference
    first_batch = np.ones((2, 3, 40, 40), dtype=np.float32)
    first = segmenter.logits(first_batch)
    kept = first.copy()
    segmenter.logits(np.zeros((3, 3, 40, 40), dtype=np.float32))
    np.testing.assert_array_equal(first, kept)
    np.testing.assert_allclose(first, reference(first_batch), rtol=1e-5, atol=1e-5)


def test_non_contiguous_and_float64_input_is_bound_as_contiguous_float32(segmenter_and_reference):
    segmenter, reference = segmenter_and_reference
    batch = np.random.default_rng(2).random((2, 40, 36, 3))  # float64, channels last in memory
    image = batch.transpose(0, 3, 1, 2)  # (N, C, H, W) view, not contiguous
    np.testing.assert_allclose(segmenter.logits(image), reference(image.astype(np.float32)),
                               rtol=1e-5, atol=1e-5)
