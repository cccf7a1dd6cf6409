"""What ``--resume`` needs beyond the weights: every RNG state, and the checked last.pt of a run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.checkpoint import load_checkpoint
from covseg.core.errors import CovsegError
from covseg.runs import LAST_CHECKPOINT, RUN_CONFIG, RUN_SPLIT


def capture_rng_state() -> dict[str, Any]:
    """Every random generator training draws from, as tensors, ints and lists only.

    Plain values keep last.pt loadable with ``weights_only=True``: numpy's legacy global state and
    Python's ``random`` state are unpacked from their tuples into lists and ints.
    """
    numpy_kind, numpy_keys, numpy_pos, numpy_has_gauss, numpy_gauss = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": numpy_kind,
            "keys": torch.from_numpy(numpy_keys.astype(np.int64)),
            "pos": int(numpy_pos),
            "has_gauss": int(numpy_has_gauss),
            "gauss": float(numpy_gauss),
        },
        "python": {"version": python_version, "state": list(python_state), "gauss": python_gauss},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["gauss"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_resume_checkpoint(run_dir: Path) -> dict[str, Any]:
    """last.pt of a run folder, checked to hold the training state ``--resume`` needs."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CovsegError(f"--resume {run_dir}: no such folder")
    missing = [name for name in (RUN_CONFIG, RUN_SPLIT, LAST_CHECKPOINT) if not (run_dir / name).is_file()]
    if missing:
        raise CovsegError(f"--resume {run_dir}: not a covseg run folder (no {', '.join(missing)})")
    checkpoint = load_checkpoint(run_dir / LAST_CHECKPOINT)
    if "training_state" not in checkpoint:
        raise CovsegError(f"--resume {run_dir}: {LAST_CHECKPOINT} holds no training state to resume from")
    return checkpoint
