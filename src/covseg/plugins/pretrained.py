"""Loading ImageNet backbone weights through timm's and torchvision's own loaders, failing fast.

Weights come from the user's cache, from ``$COVSEG_WEIGHTS_DIR`` (a folder of files named after
the timm model, e.g. ``resnet101.pth`` or ``resnet101.safetensors``), or are downloaded. Offline,
both libraries retry for up to a minute; covseg checks the host first and fails in one line.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

import torch

from covseg.core.errors import CovsegError
from covseg.files import one_line

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


def load_torchvision_weights(weights_enum, build: Callable[[], T]) -> T:
    """Run ``build`` that loads ``weights_enum`` through torchvision, with a one-line failure."""
    url = urlparse(weights_enum.url)
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url.path).name
    port = url.port or (443 if url.scheme == "https" else 80)
    if not cached.is_file() and not _host_reachable(url.hostname or "", port):
        raise CovsegError(
            f"cannot download ImageNet weights {weights_enum}: {url.hostname} is unreachable; "
            f"put {cached.name} in {cached.parent} or train without --pretrained"
        )
    return _load_or_explain(str(weights_enum), build)


def _load_or_explain(what: str, build: Callable[[], T]) -> T:
    try:
        return build()
    except CovsegError:
        raise
    except Exception as error:  # download and file errors of two libraries
        raise CovsegError(f"cannot load ImageNet weights for {what}: {one_line(error)}") from None
