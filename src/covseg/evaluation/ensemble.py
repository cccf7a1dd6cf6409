"""An ensemble of trained models that averages their class probabilities (nnU-Net's fold ensemble).

``ensemble.json`` (written by a cross-validation, :data:`covseg.runs.ENSEMBLE`) lists its members'
checkpoints relative to its own folder and the settings they share::

    {"format": "covseg-ensemble-1", "combine": "mean softmax", "model_name": "unet",
     "members": ["fold-0/best.pt", "fold-1/best.pt", ...], "num_classes": 4, "in_channels": 3,
     "class_names": [...], "normalisation": {...}, "image_size": 256}

Every member must agree with those settings (checked when the file is written and when it is
read): members that see different input or name classes differently cannot be averaged.
The ensemble's output is ``log(mean_i softmax(logits_i))`` (Isensee et al. 2021, nnU-Net,
Nature Methods 18:203, averages the fold models' softmax outputs): argmax of it is the argmax of
the mean probability, and softmax of it is the mean probability itself, so everything downstream
that treats the output as logits (evaluation, ONNX export, ``covseg predict``) is right.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from covseg.core.errors import CovsegError
from covseg.files import read_json_object, write_json

FORMAT = "covseg-ensemble-1"
COMBINE = "mean softmax"
SHARED = ("model_name", "num_classes", "in_channels", "class_names", "normalisation", "image_size")
"""What every member must share, as their checkpoints record it."""


class MeanSoftmaxEnsemble(nn.Module):
    """Takes (N, C_in, H, W), returns ``log(mean_i softmax(member_i(x)))`` (N, C, H, W) float32.

    Computed as ``logsumexp_i(log_softmax(member_i(x))) - log(M)``, stable for any logit size.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise CovsegError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        log_probabilities = torch.stack(
            [torch.log_softmax(member(images).float(), dim=1) for member in self.members])
        return torch.logsumexp(log_probabilities, dim=0) - math.log(len(self.members))


def shared_settings(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The settings of a member checkpoint that the ensemble requires to be equal."""
    return {key: checkpoint.get(key) for key in SHARED}


def write_ensemble(path: Path, members: Sequence[Path], checkpoints: Sequence[dict[str, Any]]) -> None:
    """Write ``ensemble.json`` for ``members`` (checkpoint paths inside ``path``'s folder), after
    checking that their ``checkpoints`` share every setting in :data:`SHARED`."""
    path = Path(path)
    settings = shared_settings(checkpoints[0])
    for member, checkpoint in zip(members, checkpoints, strict=True):
        _check_member(path, member, shared_settings(checkpoint), settings)
    relative = [Path(member).resolve().relative_to(path.parent.resolve()).as_posix() for member in members]
    write_json(path, {"format": FORMAT, "combine": COMBINE, "members": relative, **settings})


def read_ensemble(path: Path) -> tuple[list[Path], dict[str, Any]]:
    """The member checkpoint paths (inside the file's folder) and the shared settings; one-line errors."""
    path = Path(path)
    record = read_json_object(path)
    if record.get("format") != FORMAT:
        raise CovsegError(f"{path} is not a covseg ensemble (no '{FORMAT}' format tag)")
    if record.get("combine") != COMBINE:
        raise CovsegError(f"{path}: combine '{record.get('combine')}' is unknown; this covseg averages "
                          f"'{COMBINE}'")
    members = record.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(item, str) for item in members):
        raise CovsegError(f"{path}: 'members' must be a non-empty list of checkpoint paths")
    folder = path.parent.resolve()
    paths = []
    for member in members:
        resolved = (folder / member).resolve()
        if Path(member).is_absolute() or not resolved.is_relative_to(folder):
            raise CovsegError(f"{path}: member '{member}' lies outside the ensemble's folder")
        paths.append(resolved)
    missing = [key for key in SHARED if key not in record]
    if missing:
        raise CovsegError(f"{path} lacks '{missing[0]}'")
    return paths, {key: record[key] for key in SHARED}


def check_member(path: Path, member: Path, checkpoint: dict[str, Any], settings: dict[str, Any]) -> None:
    """Raise when a member checkpoint does not share the ensemble's ``settings``."""
    _check_member(path, member, shared_settings(checkpoint), settings)


def _check_member(path: Path, member: Path, found: dict[str, Any], expected: dict[str, Any]) -> None:
    for key in SHARED:
        if _comparable(found[key]) != _comparable(expected[key]):
            raise CovsegError(f"{path}: member {member} has {key} {found[key]!r}, the ensemble "
                              f"{expected[key]!r}; members must share {', '.join(SHARED)}")


def _comparable(value: Any) -> Any:
    """JSON and checkpoint values alike (tuples as lists)."""
    if isinstance(value, tuple | list):
        return [_comparable(item) for item in value]
    if isinstance(value, dict):
        return {key: _comparable(item) for key, item in value.items()}
    return value
