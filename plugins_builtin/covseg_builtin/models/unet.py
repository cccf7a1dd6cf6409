"""Plugin: the UNet model (network in networks/unet.py, imported when the model is built)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from covseg.plugins import CovsegError, ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


MAX_BASE_CHANNELS = 128


def build_unet(
    num_classes: int = 4, in_channels: int = 3, pretrained: bool = False, base_channels: int = 64
) -> nn.Module:
    """UNet; option ``base_channels``: the first level's width (64 as in Ronneberger 2015), doubled
    at each of the four levels down (16 trains ~16x faster than 64 at the same depth)."""
    if pretrained:
        raise CovsegError("unet has no ImageNet weights (it has no pretrained backbone); drop --pretrained")
    if type(base_channels) is not int or not 1 <= base_channels <= MAX_BASE_CHANNELS:
        raise CovsegError(f"unet option base_channels={base_channels!r}: must be an integer between 1 and "
                          f"{MAX_BASE_CHANNELS}")
    from covseg_builtin.models.networks.unet import UNet

    return UNet(num_classes=num_classes, in_channels=in_channels, base_channels=base_channels)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "unet",
            build_unet,
            "Classic UNet (Ronneberger 2015), 64-1024 channels (base_channels 64), batch norm, padded "
            "convolutions.",
            family="unet",
        ),
    ]
