"""A training run on disk: its folder, metrics.jsonl, summary.json and the state ``--resume`` needs.

Layout (``runs/<model>/<YYYYmmdd-HHMMSS>/``): config.json, split.json, metrics.jsonl (one JSON
object per epoch), best.pt (highest validation mIoU), last.pt (with optimiser, scheduler and RNG
states) and summary.json. Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from covseg.checkpoint import atomic_write, load_checkpoint
from covseg.core.errors import CovsegError
from covseg.evaluation.runs import BEST_CHECKPOINT, LAST_CHECKPOINT, RUN_CONFIG, RUN_SPLIT

METRICS_LOG = "metrics.jsonl"
SUMMARY = "summary.json"

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "METRICS_LOG",
    "RUN_CONFIG",
    "RUN_SPLIT",
    "SUMMARY",
    "MetricsLog",
    "capture_rng_state",
    "create_run_dir",
    "load_resume_checkpoint",
    "restore_rng_state",
    "write_json",
]


def create_run_dir(out: Path, model: str, now: float | None = None) -> Path:
    """A new, empty ``out/model/<timestamp>`` folder; ``-2``, ``-3``... when that second is taken.

    ``mkdir(exist_ok=False)`` makes the claim atomic, so two runs started in the same second (two
    processes, or a benchmark looping over models) never share a folder.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    parent = Path(out) / model
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CovsegError(f"--out {out}: cannot create {parent}: {error.strerror}") from None
    for suffix in range(1, 10_000):
        candidate = parent / (stamp if suffix == 1 else f"{stamp}-{suffix}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        return candidate
    raise CovsegError(f"--out {out}: could not find a free run folder name for {stamp}")


def json_safe(value: Any) -> Any:
    """NaN and infinities become null: strict JSON readers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON, atomically."""
    text = json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n"
    atomic_write(Path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))


class MetricsLog:
    """metrics.jsonl: one record per finished epoch, rewritten atomically on every append.

    The whole file is rewritten (a few hundred kB after 1500 epochs, far less than a checkpoint),
    so a killed run never leaves a half-written line.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: list[dict[str, Any]] = []

    def load(self, up_to_epoch: int) -> None:
        """Read an existing log, keeping the epochs a resumed run has checkpoints for."""
        if not self.path.is_file():
            self.records = []
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        self.records = [record for record in records if record["epoch"] <= up_to_epoch]
        self._write()

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(json_safe(record))
        self._write()

    def _write(self) -> None:
        text = "".join(json.dumps(record, allow_nan=False) + "\n" for record in self.records)
        atomic_write(self.path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


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
