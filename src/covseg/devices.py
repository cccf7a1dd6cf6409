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

_CUDA_INDEX = re.compile(r"cuda:(\d+)")

PRECISIONS = ("bf16", "fp32")
"""``--precision`` names: bf16 autocast, or float32 throughout. torch is imported only when a
device is resolved, so that the settings (and ``covseg --help``) can name these without it."""


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Asking for CUDA on a machine without it is an error, never a silent fall-back to the CPU: a
    run the user expected on a GPU must not quietly take a hundred times longer. ``cuda:N`` must
    name a device this process sees (``CUDA_VISIBLE_DEVICES`` renumbers them from 0).
    """
    import torch

    choice = name.strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.fullmatch(choice)
    if choice != "cuda" and match is None:
        raise CovsegError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise CovsegError(f"--device {name}: CUDA is not available on this machine")
    if match is None:
        return torch.device("cuda")
    index, count = int(match.group(1)), torch.cuda.device_count()
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
