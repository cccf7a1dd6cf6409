"""The plugin module named by the entry point: one hook implementation, one model.

It imports only ``covseg.plugins`` and nothing heavy: covseg imports it at every start (also for
``covseg models``). The network (torch) is imported by the factory, when the model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from covseg.plugins import CovsegError, ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


def build_unet_lite(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    if pretrained:
        raise CovsegError("unet-lite has no pretrained weights; drop --pretrained")
    from covseg_unet_lite.network import UNetLite

    return UNetLite(num_classes, in_channels)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "unet-lite",
            build_unet_lite,
            "Two-level UNet, 16-64 channels (example plugin).",
            family="unet",
        ),
    ]
