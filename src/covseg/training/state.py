"""What ``--resume`` needs beyond the weights: every RNG state, and the checked last.pt of a run."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.checkpoint import load_checkpoint
from covseg.core.errors import CovsegError
from covseg.runs import LAST_CHECKPOINT, RUN_CONFIG, RUN_SPLIT, SUMMARY, read_summary
from covseg.terminal import counted


def capture_rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every random generator training draws from, as tensors, ints and lists only.

    Plain values keep last.pt loadable with ``weights_only=True``: numpy's legacy global state and
    Python's ``random`` state are unpacked from their tuples into lists and ints. On a CUDA
    ``device`` its generator's state is kept too (``cuda``), that device's only: a process trains
    on one GPU, and a run may resume on a machine with another number of them.
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
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Inverse of :func:`capture_rng_state`, onto ``device``'s generator for the CUDA state.

    A CUDA state is restored only onto a CUDA device (a CPU run draws nothing from it). A state
    saved by earlier covseg versions is a list with one state per visible GPU; the one of
    ``device``'s index is taken (the first when that index is not in it).
    """
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
    cuda_state = state.get("cuda")
    if cuda_state is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda_state, list | tuple):
        if not cuda_state:
            return
        index = device.index or 0
        cuda_state = cuda_state[index] if index < len(cuda_state) else cuda_state[0]
    torch.cuda.set_rng_state(cuda_state, device)


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


def epochs_trained(run_dir: Path) -> int | None:
    """The epochs a run folder has trained: its summary.json's ``epochs_run`` when it finished, else
    the epoch of its last.pt; ``None`` when it has neither (it never saved an epoch)."""
    run_dir = Path(run_dir)
    if (run_dir / SUMMARY).is_file():
        epochs_run = read_summary(run_dir).get("epochs_run")
        if isinstance(epochs_run, int):
            return epochs_run
    if (run_dir / LAST_CHECKPOINT).is_file():
        return int(load_checkpoint(run_dir / LAST_CHECKPOINT)["epoch"])
    return None


def check_resume_epochs(run_dir: Path, trained: int, epochs: int) -> None:
    """Refuse to resume ``run_dir``, which has trained ``trained`` epochs, to fewer ``epochs``: its
    config.json would then record a count it did not train (raises :class:`CovsegError`)."""
    if epochs < trained:
        raise CovsegError(f"--resume {run_dir} has trained {counted(trained, 'epoch')}; --epochs must be at "
                          f"least {trained}")
