"""Plugin: the UNet model (network in networks/unet.py, imported when the model is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from covseg.plugins import CovsegError, ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


def build_unet(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    if pretrained:
        raise CovsegError("unet has no ImageNet weights (it has no pretrained backbone); drop --pretrained")
    from covseg_builtin.models.networks.unet import UNet

    return UNet(num_classes=num_classes, in_channels=in_channels)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "unet",
            build_unet,
            "Classic UNet (Ronneberger 2015), 64-1024 channels, batch norm, padded convolutions.",
            family="unet",
        ),
    ]
