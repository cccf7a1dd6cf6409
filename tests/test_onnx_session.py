"""Provider choice finds the GPU through the CUDA driver, not through torch.

The driver library is replaced by a fake here (this machine has no GPU); on a GPU machine the real
driver answers the same two calls.
"""

from __future__ import annotations

import ctypes

import onnxruntime
import pytest

from covseg.core.errors import CovsegError
from covseg.onnx import session

CUDA_ERROR_NO_DEVICE = 100


class FakeDriver:
    """``cuInit`` and ``cuDeviceGetCount`` of libcuda, answering with fixed values."""

    def __init__(self, init_status: int = 0, devices: int = 0):
        self.init_status, self.devices = init_status, devices

    def cuInit(self, flags: int) -> int:  # the driver API's own names
        return self.init_status

    def cuDeviceGetCount(self, count) -> int:
        count._obj.value = self.devices
        return 0


def use_driver(monkeypatch, driver: FakeDriver | None) -> list[str]:
    """Make ``ctypes.CDLL`` find ``driver`` as libcuda.so.1 (None: no driver) and nothing else."""
    asked: list[str] = []

    def load(name: str, *args, **kwargs):
        asked.append(name)
        if driver is not None and name == "libcuda.so.1":
            return driver
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", load)
    return asked


def test_the_gpu_count_comes_from_the_cuda_driver(monkeypatch):
    asked = use_driver(monkeypatch, None)
    assert session.cuda_device_count() == 0
    assert asked == list(session._CUDA_DRIVER_LIBRARIES)
    use_driver(monkeypatch, FakeDriver(init_status=CUDA_ERROR_NO_DEVICE, devices=3))
    assert session.cuda_device_count() == 0
    use_driver(monkeypatch, FakeDriver(devices=2))
    assert session.cuda_device_count() == 2


@pytest.mark.parametrize(("devices", "expected"),
                         [(1, [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
                          (0, ["CPUExecutionProvider"])])
def test_auto_takes_cuda_exactly_when_the_driver_shows_a_gpu(monkeypatch, devices, expected):
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(session, "_preload_cuda_libraries", lambda: None)
    use_driver(monkeypatch, FakeDriver(devices=devices))
    assert session.choose_providers("auto") == expected
    assert session.choose_providers("cpu") == ["CPUExecutionProvider"]
    if devices:
        with pytest.raises(CovsegError, match="--device cuda:1: onnxruntime sees 1 CUDA GPU"):
            session.choose_providers("cuda:1")
    if not devices:
        with pytest.raises(CovsegError, match="--device cuda: no CUDA GPU is usable by onnxruntime"):
            session.choose_providers("cuda")


def test_without_the_cuda_provider_the_driver_is_not_asked(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    asked = use_driver(monkeypatch, FakeDriver(devices=1))
    assert session.choose_providers("auto") == ["CPUExecutionProvider"]
    assert asked == []
