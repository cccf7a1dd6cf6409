"""Plugin: FCN (Long et al., 2015) and DeepLab V3 (Chen et al., 2017) from
torchvision.models.segmentation, imported when a model is built.

Output stride 8 (dilated ResNet), no auxiliary head; forward returns the ``out`` tensor. ImageNet
weights (``--pretrained``) are loaded into the backbone by :mod:`covseg.plugins.pretrained`,
never unpickled.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from covseg.plugins import ModelEntry, hookimpl

if TYPE_CHECKING:
    from torch import nn


def build_torchvision_segmentation(
    builder: str,
    backbone_weights: str,
    num_classes: int = 4,
    in_channels: int = 3,
    pretrained: bool = False,
) -> nn.Module:
    """``torchvision.models.segmentation.<builder>`` (e.g. ``fcn_resnet50``) without its auxiliary
    head; ``backbone_weights`` names the torchvision ImageNet weights loaded when ``pretrained``."""
    from torchvision.models import segmentation

    from covseg.plugins.layers import OutTensor, adapt_input_conv
    from covseg.plugins.pretrained import load_torchvision_backbone

    model = getattr(segmentation, builder)(weights=None, weights_backbone=None, num_classes=num_classes,
                                           aux_loss=False)
    if pretrained:
        load_torchvision_backbone(model.backbone, backbone_weights)
    model.backbone.conv1 = adapt_input_conv(model.backbone.conv1, in_channels)
    return OutTensor(model)


@hookimpl
def covseg_models() -> list[ModelEntry]:
    return [
        ModelEntry(
            "fcn-resnet50",
            partial(build_torchvision_segmentation, "fcn_resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
            "FCN (torchvision) on a dilated ResNet-50 backbone, output stride 8.",
            family="fcn",
        ),
        ModelEntry(
            "fcn-resnet101",
            partial(build_torchvision_segmentation, "fcn_resnet101", "ResNet101_Weights.IMAGENET1K_V1"),
            "FCN (torchvision) on a dilated ResNet-101 backbone, output stride 8.",
            family="fcn",
        ),
        ModelEntry(
            "deeplabv3-resnet50",
            partial(build_torchvision_segmentation, "deeplabv3_resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
            "DeepLab V3 (torchvision) on a dilated ResNet-50 backbone, ASPP, output stride 8.",
            family="deeplabv3",
            aliases=("deeplab-resnet50",),
        ),
        ModelEntry(
            "deeplabv3-resnet101",
            partial(build_torchvision_segmentation, "deeplabv3_resnet101", "ResNet101_Weights.IMAGENET1K_V1"),
            "DeepLab V3 (torchvision) on a dilated ResNet-101 backbone, ASPP, output stride 8.",
            family="deeplabv3",
            aliases=("deeplab-resnet101",),
        ),
    ]
