"""The user's ``--device``, ``--precision`` and ``--channels-last`` as torch objects, with one-line errors.

The defaults follow the device: bf16 autocast and channels-last tensors on CUDA, where tensor
cores roughly double the throughput of these convolutional networks; float32 and the default
layout on the CPU. Both also run on the CPU when asked for (PyTorch's CPU autocast supports
bf16), which is how the CUDA branches are exercised on machines without a GPU.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from covseg.core.errors import CovsegError

if TYPE_CHECKING:
    import torch

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
"""``--device`` kinds; ``cuda:N`` names GPU N. Spelled exactly so: ``CUDA`` or ``"cuda:0 "`` is a typo."""
_DEVICE = re.compile(r"(auto|cpu|cuda)(?::([0-9]+))?")  # ASCII digits only: int() must read them

PRECISIONS = ("bf16", "fp32")
"""``--precision`` names: bf16 autocast, or float32 throughout. torch is imported only when a
device is resolved, so that the settings (and ``covseg --help``) can name these without it."""


def parse_device(name: str) -> tuple[str, int | None]:
    """The syntax of ``--device`` (every command's): (kind, GPU index or None), checked without torch.

    Raises CovsegError ``--device NAME: expected auto, cpu, cuda or cuda:N`` for anything
    else, the name quoted when it holds spaces.
    """
    match = _DEVICE.fullmatch(name)
    if match is None or (match[2] is not None and match[1] != "cuda"):
        shown = repr(name) if not name.isprintable() or name != "".join(name.split()) else name
        raise CovsegError(f"--device {shown}: expected {', '.join(DEVICES)} or cuda:N")
    return match[1], int(match[2]) if match[2] is not None else None


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Asking for CUDA on a machine without it is an error, never a silent fall-back to the CPU: a
    run the user expected on a GPU must not quietly take a hundred times longer. ``cuda:N`` must
    name a device this process sees (``CUDA_VISIBLE_DEVICES`` renumbers them from 0).
    """
    import torch

    kind, index = parse_device(name)
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise CovsegError(f"--device {name}: CUDA is not available on this machine")
    if index is None:
        return torch.device("cuda")
    count = torch.cuda.device_count()
    if index >= count:
        raise CovsegError(f"--device {name}: this machine has {count} CUDA device(s), numbered from 0")
    return torch.device("cuda", index)


def default_precision(device: torch.device) -> str:
    """``bf16`` on CUDA, ``fp32`` elsewhere (the default of ``--precision``)."""
    return "bf16" if device.type == "cuda" else "fp32"


def default_channels_last(device: torch.device) -> bool:
    """Channels-last on CUDA only (the default of ``--channels-last``)."""
    return device.type == "cuda"


def autocast_dtype(precision: str) -> torch.dtype | None:
    """``torch.bfloat16`` for ``bf16``, None for ``fp32``; one-line error for other names."""
    import torch

    if precision not in PRECISIONS:
        raise CovsegError(f"--precision {precision}: choose one of {', '.join(PRECISIONS)}")
    return torch.bfloat16 if precision == "bf16" else None
