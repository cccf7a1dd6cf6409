"""DeepLab V3+ (Chen et al., 2018) on timm encoders, output stride 16 or 8.

The encoder's stride-16 (or dilated stride-8) features go through ASPP (torchvision's; its rates
6, 12, 18 doubled at stride 8, as in the paper), are up-sampled to the stride-4
low-level features, joined with them after a 1x1 reduction to 48 channels, refined by two 3x3
convolutions, classified and up-sampled to the input size.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP

from covseg.plugins.layers import ConvBNReLU, resize_to
from covseg.plugins.pretrained import create_timm_model


class DeepLabV3Plus(nn.Module):
    """(N, in_channels, H, W) float -> logits (N, num_classes, H, W); any H, W >= 32."""

    def __init__(self, encoder: nn.Module, num_classes: int, aspp_rates: tuple[int, int, int] = (6, 12, 18)):
        super().__init__()
        self.encoder = encoder
        low_channels, high_channels = encoder.feature_info.channels()
        self.aspp = ASPP(high_channels, list(aspp_rates), out_channels=256)
        self.low_level = ConvBNReLU(low_channels, 48, kernel_size=1)
        self.decoder = nn.Sequential(ConvBNReLU(256 + 48, 256), ConvBNReLU(256, 256))
        self.classifier = nn.Conv2d(256, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = self.encoder(x)
        low = self.low_level(low)
        high = resize_to(self.aspp(high), low)
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return resize_to(logits, x)


ASPP_RATES_AT_16 = (6, 12, 18)


def deeplabv3plus(
    encoder_name: str, num_classes: int, in_channels: int, pretrained: bool, output_stride: int = 16
) -> DeepLabV3Plus:
    """DeepLab V3+ on the timm encoder ``encoder_name`` (ImageNet weights when ``pretrained``)."""
    # out_indices (1, 4): the stride-4 low-level features and the last (stride-16 or 8) stage.
    encoder = create_timm_model(
        encoder_name,
        pretrained=pretrained,
        features_only=True,
        out_indices=(1, 4),
        output_stride=output_stride,
        in_chans=in_channels,
    )
    rates = tuple(rate * 16 // output_stride for rate in ASPP_RATES_AT_16)
    return DeepLabV3Plus(encoder, num_classes, aspp_rates=rates)
