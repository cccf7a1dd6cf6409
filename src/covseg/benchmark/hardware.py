"""Names of the hardware a figure was measured on, for the report's footnotes."""

from __future__ import annotations

import platform
from pathlib import Path

from covseg.devices import resolve_device


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def device_name(device: str) -> str:
    """``NVIDIA H100 80GB HBM3`` for a CUDA device, ``CPU <model name>`` otherwise."""
    import torch

    target = resolve_device(device)
    if target.type == "cuda":
        return torch.cuda.get_device_name(target)
    return f"CPU {cpu_name()}"
