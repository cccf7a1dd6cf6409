"""onnxruntime sessions for segmentation models: provider choice, tuned options, I/O binding.

Provider order for ``device="auto"``: TensorRT (when its libraries load), CUDA (when a CUDA GPU is
usable), then the CPU. ``cpu`` and ``cuda`` force one; asking for CUDA where there is none is a
one-line error, never a silent fall-back. onnxruntime-gpu finds the CUDA 13 libraries that torch's
wheels install (the ``nvidia-*`` packages) through ``onnxruntime.preload_dlls()``; the GPU itself
is found through the CUDA driver, so running a model never imports torch.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from covseg.core.errors import CovsegError
from covseg.devices import DEVICES  # noqa: F401 -- the one list of --device kinds, re-exported
from covseg.devices import parse_device as parse_device_text
from covseg.files import one_line
from covseg.onnx.metadata import ExportMetadata, has_covseg_metadata

Device = Literal["auto", "cpu", "cuda"]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
_TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll")
_CUDA_DRIVER_LIBRARIES = ("libcuda.so.1", "libcuda.so", "nvcuda.dll")


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _preload_cuda_libraries() -> None:
    import onnxruntime

    if hasattr(onnxruntime, "preload_dlls"):
        # A library that is not there: the session start reports what is missing.
        with contextlib.suppress(OSError):
            onnxruntime.preload_dlls()


def cuda_device_count() -> int:
    """CUDA GPUs the driver shows this process (it honours ``CUDA_VISIBLE_DEVICES``); 0 without a driver.

    Asks the CUDA driver API (``cuInit``, ``cuDeviceGetCount``) directly, as ``torch.cuda`` does
    underneath, so that choosing a provider does not cost a torch import.
    """
    for name in _CUDA_DRIVER_LIBRARIES:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0  # a driver without a usable device (or a broken install)
        return count.value
    return 0


def cuda_usable() -> bool:
    """A CUDA GPU that onnxruntime can run on: the CUDA provider is built in and the driver shows a GPU."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return False
    return cuda_device_count() > 0


def tensorrt_usable() -> bool:
    """TensorRT's provider is built in and its library loads (it is rarely installed)."""
    import onnxruntime

    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        return False
    for name in _TENSORRT_LIBRARIES:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def parse_device(device: str) -> tuple[str, int]:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (as ``covseg train`` and ``eval`` take it) as
    (kind, GPU index); raises :class:`CovsegError` naming ``--device`` otherwise."""
    kind, index = parse_device_text(device)
    return kind, index or 0


def choose_providers(device: str) -> list:
    """The provider list to ask onnxruntime for, best first (``cuda:N``: GPU N)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if not cuda_usable() or index >= cuda_device_count():
        if kind == "cuda":
            if index:
                raise CovsegError(f"--device {device}: onnxruntime sees {cuda_device_count()} CUDA GPU(s) "
                                  "on this machine; use --device cpu or auto")
            raise CovsegError(
                "--device cuda: no CUDA GPU is usable by onnxruntime on this machine; "
                "use --device cpu or auto"
            )
        return ["CPUExecutionProvider"]
    _preload_cuda_libraries()
    providers: list = []
    if tensorrt_usable():
        cache = Path.home() / ".cache" / "covseg" / "tensorrt"
        providers.append(
            (
                "TensorrtExecutionProvider",
                {"device_id": index, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)},
            )
        )
    providers += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return providers


def session_options(threads: int | None = None):
    """Full graph optimisation, intra-op threads = cores, warnings only from onnxruntime's log."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or cpu_cores()
    options.log_severity_level = 3
    return options


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | str | None, ...]
    type: str


class OnnxSegmenter:
    """An onnxruntime session of a segmentation model: (N, C, H, W) float32 in, logits out.

    ``model`` is an ONNX file or its bytes (an export made on the fly); ``origin`` names it in
    messages. ``provider`` is the provider that runs the graph after onnxruntime's own fall-backs.
    """

    def __init__(
        self, model: Path | bytes, device: str = "auto", threads: int | None = None, origin: str | None = None
    ):
        from covseg.onnx.install import import_onnxruntime

        onnxruntime = import_onnxruntime()
        self.origin = origin or (str(model) if isinstance(model, Path) else "exported model")
        providers = choose_providers(device)
        source = str(model) if isinstance(model, Path) else model
        if isinstance(model, Path) and not model.is_file():
            raise CovsegError(f"{model} does not exist")
        try:
            self.session = onnxruntime.InferenceSession(source, session_options(threads), providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise CovsegError(
                f"{self.origin} is not an ONNX model onnxruntime can run: {one_line(error)}"
            ) from None
        self.provider = self.session.get_providers()[0]
        kind, self.device_index = parse_device(device)
        if kind == "cuda" and self.provider not in GPU_PROVIDERS:
            raise CovsegError(
                f"--device cuda: onnxruntime could not start its CUDA provider for {self.origin}"
            )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise CovsegError(
                f"{self.origin} takes {len(inputs)} inputs; a segmentation model takes one image"
            )
        self.input = TensorSpec(inputs[0].name, tuple(inputs[0].shape), inputs[0].type)
        self.output = TensorSpec(outputs[0].name, tuple(outputs[0].shape), outputs[0].type)
        if len(self.input.shape) != 4 or self.input.type != "tensor(float)":
            raise CovsegError(
                f"{self.origin} takes {self.input.type} of shape {list(self.input.shape)}; "
                "covseg feeds float32 (N, C, H, W)"
            )
        if len(self.output.shape) != 4:
            raise CovsegError(
                f"{self.origin} returns shape {list(self.output.shape)}; "
                "covseg expects logits (N, classes, H, W)"
            )
        self.on_gpu = self.provider in GPU_PROVIDERS
        self.binding = self.session.io_binding()

    @property
    def in_channels(self) -> int | None:
        """Input channels when the graph fixes them, else None."""
        channels = self.input.shape[1]
        return channels if isinstance(channels, int) else None

    @property
    def num_classes(self) -> int | None:
        """Output channels (classes) when the graph fixes them, else None."""
        classes = self.output.shape[1]
        return classes if isinstance(classes, int) else None

    @property
    def metadata_props(self) -> dict[str, str]:
        """The model's ``metadata_props`` as onnxruntime read them."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def covseg_metadata(self) -> ExportMetadata | None:
        """The covseg metadata the model carries; None for a model from elsewhere (no ``covseg.*`` key).

        Raises :class:`CovsegError` naming the model when the metadata is incomplete or malformed.
        """
        props = self.metadata_props
        return ExportMetadata.from_props(props, self.origin) if has_covseg_metadata(props) else None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N, C, H, W) float32 and return the logits (N, classes, H', W') on the host.

        Through I/O binding on every provider: the input is bound where the provider computes
        (one explicit host-to-device copy on a GPU; the array itself, without a copy, on the CPU)
        and the output is allocated there by onnxruntime at the shape this batch gives, then
        copied to the host. One binding serves batches of any size in turn.
        """
        import onnxruntime

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        device = "cuda" if self.on_gpu else "cpu"
        binding = self.binding
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        index = self.device_index if self.on_gpu else 0
        bound = onnxruntime.OrtValue.ortvalue_from_numpy(batch, device, index)
        binding.bind_ortvalue_input(self.input.name, bound)
        binding.bind_output(self.output.name, device, index)
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def labels(self, batch: np.ndarray) -> np.ndarray:
        """Class labels (N, H', W') uint8 of one batch; NaN logits never win."""
        logits = self.logits(batch)
        return np.nan_to_num(logits, nan=-np.inf).argmax(axis=1).astype(np.uint8)
