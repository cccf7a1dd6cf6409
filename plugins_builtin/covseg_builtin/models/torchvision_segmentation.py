"""FCN (Long et al., 2015) and DeepLab V3 (Chen et al., 2017) from torchvision.models.segmentation.

Output stride 8 (dilated ResNet), no auxiliary head; forward returns the ``out`` tensor.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet50_Weights, ResNet101_Weights
from torchvision.models import segmentation as tv_segmentation

from covseg.plugins import ModelEntry, hookimpl
from covseg.plugins.layers import OutTensor, adapt_input_conv
from covseg.plugins.pretrained import load_torchvision_weights

_BACKBONE_WEIGHTS = {"resnet50": ResNet50_Weights.IMAGENET1K_V1, "resnet101": ResNet101_Weights.IMAGENET1K_V1}


def _factory(architecture: str, backbone: str):
    builder = getattr(tv_segmentation, f"{architecture}_{backbone}")

    def build(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
        def make() -> nn.Module:
            weights = _BACKBONE_WEIGHTS[backbone] if pretrained else None
            return builder(weights=None, weights_backbone=weights, num_classes=num_classes, aux_loss=False)

        model = load_torchvision_weights(_BACKBONE_WEIGHTS[backbone], make) if pretrained else make()
        model.backbone.conv1 = adapt_input_conv(model.backbone.conv1, in_channels)
        return OutTensor(model)

    return build


_DESCRIPTIONS = {
    "fcn": "FCN (torchvision) on a dilated {} backbone, output stride 8.",
    "deeplab": "DeepLab V3 (torchvision) on a dilated {} backbone, ASPP, output stride 8.",
}


@hookimpl
def covseg_models() -> list[ModelEntry]:
    entries = []
    for family, architecture in (("fcn", "fcn"), ("deeplab", "deeplabv3")):
        for backbone in ("resnet50", "resnet101"):
            pretty = backbone.replace("resnet", "ResNet-")
            entries.append(
                ModelEntry(
                    f"{family}-{backbone}",
                    _factory(architecture, backbone),
                    _DESCRIPTIONS[family].format(pretty),
                    family,
                )
            )
    return entries
