"""covseg checkpoints: written atomically, read with ``weights_only=True`` (never executes code).

A checkpoint is a dict of tensors and plain values:

- ``format``: ``"covseg-checkpoint-1"``
- ``model_name``, ``num_classes``, ``in_channels``, ``class_names``, ``model_options`` (the
  factory's keyword arguments, ``--model-option``; absent in checkpoints before it existed)
- ``normalisation``: the intensity settings the model was trained with
  (:meth:`covseg.data.intensity.Normalisation.to_dict`)
- ``image_size``: the side the slices were resized to for training, or None
- ``state_dict``: the model's weights
- ``epoch``, ``metrics`` (validation metrics of that epoch), ``run_dir``
- training state for ``--resume`` (optimizer, scheduler, RNG states), when present
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from covseg.core.errors import CovsegError
from covseg.files import atomic_write, one_line

FORMAT = "covseg-checkpoint-1"


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Save atomically (temporary file in the same folder, then rename)."""
    atomic_write(Path(path), lambda handle: torch.save({"format": FORMAT, **checkpoint}, handle))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a covseg checkpoint; one-line errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CovsegError(f"checkpoint {path} does not exist")
    with path.open("rb") as handle:  # torch.save writes a zip archive (a pickle before torch 1.6)
        head = handle.read(4)
    if not (head == b"PK\x03\x04" or head[:1] == b"\x80"):  # zip local header; pickle protocol 2+
        raise CovsegError(f"{path} is not a covseg checkpoint (not a PyTorch file)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors alike
        raise CovsegError(f"{path} is not a readable covseg checkpoint: {one_line(error)}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CovsegError(f"{path} is not a covseg checkpoint (no '{FORMAT}' format tag)")
    return checkpoint


def model_from_checkpoint(path: Path, map_location: str | torch.device = "cpu"):
    """Rebuild the trained model of a checkpoint; returns ``(model in eval mode, checkpoint)``."""
    from covseg.core.registry import create_model

    checkpoint = load_checkpoint(path, map_location)
    options = checkpoint.get("model_options") or {}
    if not isinstance(options, dict):
        raise CovsegError(f"{path}: model_options is {type(options).__name__}, not a table")
    model = create_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"],
                         in_channels=checkpoint.get("in_channels", 3), **options)
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
