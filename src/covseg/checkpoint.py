"""covseg checkpoints: written atomically, read with ``weights_only=True`` (never executes code).

A checkpoint is a dict of tensors and plain values:

- ``format``: ``"covseg-checkpoint-1"``
- ``model_name``, ``num_classes``, ``in_channels``, ``class_names``
- ``normalisation``: the intensity settings the model was trained with
  (:meth:`covseg.data.intensity.Normalisation.to_dict`)
- ``image_size``: the side the slices were resized to for training, or None
- ``state_dict``: the model's weights
- ``epoch``, ``metrics`` (validation metrics of that epoch), ``run_dir``
- training state for ``--resume`` (optimizer, scheduler, RNG states), when present
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from covseg.core.errors import CovsegError

FORMAT = "covseg-checkpoint-1"


def atomic_write(path: Path, write: Any) -> None:
    """Call ``write(temporary_path)`` then rename it onto ``path``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(Path(temporary))
        # mkstemp creates the file 0600; give it the permissions a plain open() would have.
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json_object(path: Path, missing: str = "") -> dict[str, Any]:
    """A JSON file holding an object, as a dict; one-line errors naming the file.

    ``missing`` is appended to the message for a file that does not exist (e.g. what it means).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CovsegError(f"{path} does not exist{missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CovsegError(f"{path} is not readable JSON: {error}") from None
    if not isinstance(data, dict):
        raise CovsegError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(checkpoint: dict[str, Any], path: Path) -> None:
    """Save atomically (temporary file in the same folder, then rename)."""
    atomic_write(Path(path), lambda temporary: torch.save({"format": FORMAT, **checkpoint}, temporary))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a covseg checkpoint; one-line errors for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CovsegError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle, zip and unsafe-global errors alike
        message = " ".join(str(error).split())[:160]
        raise CovsegError(f"{path} is not a readable covseg checkpoint: {message}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CovsegError(f"{path} is not a covseg checkpoint (no '{FORMAT}' format tag)")
    return checkpoint


def model_from_checkpoint(path: Path, map_location: str | torch.device = "cpu"):
    """Rebuild the trained model of a checkpoint; returns ``(model in eval mode, checkpoint)``."""
    from covseg.core.registry import create_model

    checkpoint = load_checkpoint(path, map_location)
    model = create_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"],
                         in_channels=checkpoint.get("in_channels", 3))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint
