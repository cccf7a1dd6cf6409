"""Plugin: DeepLab V3+ on timm encoders (network in networks/deeplabv3plus.py, imported when built)."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from covseg.plugins import CovsegError, ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


OUTPUT_STRIDES = (8, 16)


def build_deeplabv3plus(
    encoder_name: str,
    num_classes: int = 4,
    in_channels: int = 3,
    pretrained: bool = False,
    output_stride: int = 16,
) -> nn.Module:
    """DeepLab V3+ on the timm encoder ``encoder_name`` (``resnet101``, ``xception65``).

    Option ``output_stride``: 16 (default) or 8, the encoder's down-sampling; 8 keeps finer detail
    (small lesions) at about 3x the encoder's compute, as in Chen et al. 2018.
    """
    if type(output_stride) is not int or output_stride not in OUTPUT_STRIDES:
        raise CovsegError(f"deeplabv3plus option output_stride={output_stride!r}: must be 8 or 16")
    from covseg_builtin.models.networks.deeplabv3plus import deeplabv3plus

    return deeplabv3plus(encoder_name, num_classes, in_channels, pretrained, output_stride)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "deeplabv3plus-resnet101",
            partial(build_deeplabv3plus, "resnet101"),
            "DeepLab V3+ on a ResNet-101 encoder (timm), ASPP, low-level skip, output stride 16 or 8.",
            family="deeplabv3plus",
        ),
        ModelEntry(
            "deeplabv3plus-xception",
            partial(build_deeplabv3plus, "xception65"),
            "DeepLab V3+ on aligned Xception-65 (timm), as in the paper, output stride 16 or 8.",
            family="deeplabv3plus",
        ),
    ]
