"""Loading ImageNet backbone weights (timm's loader; torch.hub for torchvision's files), failing fast.

Weights come from the user's cache, from ``$COVSEG_WEIGHTS_DIR`` (a folder of files named after
the timm model, e.g. ``resnet101.pth`` or ``resnet101.safetensors``), or are downloaded. Offline,
both libraries retry for up to a minute; covseg checks the host first and fails in one line.

No file is unpickled: timm loads with ``weights_only=True`` (or safetensors), and torchvision's
weights are read here with ``torch.load(..., weights_only=True)`` rather than by torchvision's
builders, which unpickle the cached file in full (a crafted file in the cache would run code).
torch, timm and torchvision are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlparse

from covseg.core.errors import CovsegError
from covseg.files import one_line

if TYPE_CHECKING:
    import torch

WEIGHTS_DIR_VARIABLE = "COVSEG_WEIGHTS_DIR"
_HUB_HOST = "huggingface.co"
T = TypeVar("T")


def _host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def local_weights_file(model_name: str) -> Path | None:
    """The file for ``model_name`` in ``$COVSEG_WEIGHTS_DIR``, if the user put one there."""
    folder = os.environ.get(WEIGHTS_DIR_VARIABLE)
    if not folder:
        return None
    for suffix in (".safetensors", ".pth", ".pt", ".bin"):
        candidate = Path(folder) / f"{model_name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def create_timm_model(timm_name: str, pretrained: bool, **kwargs) -> torch.nn.Module:
    """``timm.create_model`` with ImageNet weights from a local file, timm's cache or the hub."""
    import timm

    if not pretrained:
        return timm.create_model(timm_name, pretrained=False, **kwargs)
    local_file = local_weights_file(timm_name)
    if local_file is not None:
        overlay = {"file": str(local_file), "hf_hub_id": None, "url": ""}
        return _load_or_explain(
            timm_name,
            lambda: timm.create_model(
                timm_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs
            ),
        )
    if not _timm_weights_cached(timm_name) and not _host_reachable(_HUB_HOST):
        raise CovsegError(
            f"cannot download ImageNet weights for {timm_name}: {_HUB_HOST} is unreachable; "
            f"put the file in ${WEIGHTS_DIR_VARIABLE} as {timm_name}.safetensors "
            "or train without --pretrained"
        )
    return _load_or_explain(timm_name, lambda: timm.create_model(timm_name, pretrained=True, **kwargs))


def _timm_weights_cached(timm_name: str) -> bool:
    import timm
    from huggingface_hub import try_to_load_from_cache

    hub_id = timm.models.get_pretrained_cfg(timm_name).hf_hub_id
    if not hub_id:
        return False
    return any(
        isinstance(try_to_load_from_cache(hub_id, filename), str)
        for filename in ("model.safetensors", "pytorch_model.bin")
    )


def load_torchvision_backbone(backbone: torch.nn.Module, weights_name: str) -> None:
    """Load torchvision ImageNet weights into ``backbone``, without unpickling anything.

    ``weights_name`` is a torchvision weights name (``"ResNet50_Weights.IMAGENET1K_V1"``); the file
    comes from torch's hub cache (``$TORCH_HOME/hub/checkpoints``) or is downloaded there with
    torchvision's hash check, then read with ``weights_only=True``. ``backbone`` may lack the
    classifier (``fc.*``), as segmentation backbones do; every one of its own tensors must be in
    the file. Raises CovsegError (one line) when the host is unreachable, the file is refused or
    does not fit.
    """
    import torch
    from torchvision.models import get_weight

    weights = get_weight(weights_name)
    url = urlparse(weights.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url.path).name
    port = url.port or (443 if url.scheme == "https" else 80)
    if not cached.is_file() and not _host_reachable(url.hostname or "", port):
        raise CovsegError(
            f"cannot download ImageNet weights {weights_name}: {url.hostname} is unreachable; "
            f"put {cached.name} in {cached.parent} or train without --pretrained"
        )
    try:
        state = torch.hub.load_state_dict_from_url(
            weights.url, progress=True, check_hash=True, weights_only=True
        )
    except pickle.UnpicklingError:
        raise CovsegError(
            f"refusing {cached}: it is not a plain weights file (loading it would run code); "
            "delete it to download it again, or train without --pretrained"
        ) from None
    except Exception as error:  # download, hash and file errors
        raise CovsegError(f"cannot load ImageNet weights {weights_name}: {one_line(error)}") from None
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    unexpected = [key for key in unexpected if not key.startswith("fc.")]
    if missing or unexpected:
        raise CovsegError(
            f"{cached} does not fit the backbone: {len(missing)} tensor(s) missing "
            f"(e.g. {(missing or ['-'])[0]}), {len(unexpected)} unexpected (e.g. {(unexpected or ['-'])[0]})"
        )


def _load_or_explain(what: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except CovsegError:
        raise
    except Exception as error:  # download and file errors of two libraries
        raise CovsegError(f"cannot load ImageNet weights for {what}: {one_line(error)}") from None
