"""Turns the user's ``--device`` choice into a ``torch.device``, with one-line errors."""

from __future__ import annotations

import re

import torch

from covseg.core.errors import CovsegError

_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Asking for CUDA on a machine without it is an error, never a silent fall-back to the CPU: a
    run the user expected on a GPU must not quietly take a hundred times longer.
    """
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
