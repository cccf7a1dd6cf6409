"""Plugin: DeepLab V3+ on timm encoders (network in networks/deeplabv3plus.py, imported when built)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from covseg.plugins import ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


def build_deeplabv3plus(
    encoder_name: str, num_classes: int = 4, in_channels: int = 3, pretrained: bool = False
) -> nn.Module:
    """DeepLab V3+ on the timm encoder ``encoder_name`` (``resnet101``, ``xception65``)."""
    from covseg_builtin.models.networks.deeplabv3plus import deeplabv3plus

    return deeplabv3plus(encoder_name, num_classes, in_channels, pretrained)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "deeplabv3plus-resnet101",
            partial(build_deeplabv3plus, "resnet101"),
            "DeepLab V3+ on a ResNet-101 encoder (timm), ASPP, low-level skip, output stride 16.",
            family="deeplabv3plus",
        ),
        ModelEntry(
            "deeplabv3plus-xception",
            partial(build_deeplabv3plus, "xception65"),
            "DeepLab V3+ on aligned Xception-65 (timm), as in the paper, output stride 16.",
            family="deeplabv3plus",
        ),
    ]
