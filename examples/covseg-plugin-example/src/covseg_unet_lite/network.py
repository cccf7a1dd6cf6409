"""The network, imported by the factory in plugin.py only when the model is built (torch is heavy)."""

from __future__ import annotations

import torch
from torch import nn

from covseg.plugins.layers import ConvBNReLU, resize_to


class UNetLite(nn.Module):
    """Two down-samplings, 16-32-64 channels: a UNet small enough for a laptop CPU.

    (N, in_channels, H, W) float -> logits (N, num_classes, H, W), any H, W >= 32.
    """

    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        self.encoder1 = nn.Sequential(ConvBNReLU(in_channels, 16), ConvBNReLU(16, 16))
        self.encoder2 = nn.Sequential(nn.MaxPool2d(2), ConvBNReLU(16, 32), ConvBNReLU(32, 32))
        self.bottom = nn.Sequential(nn.MaxPool2d(2), ConvBNReLU(32, 64), ConvBNReLU(64, 64))
        self.decoder2 = nn.Sequential(ConvBNReLU(64 + 32, 32), ConvBNReLU(32, 32))
        self.decoder1 = nn.Sequential(ConvBNReLU(32 + 16, 16), ConvBNReLU(16, 16))
        self.head = nn.Conv2d(16, num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip1 = self.encoder1(x)
        skip2 = self.encoder2(skip1)
        x = self.bottom(skip2)
        x = self.decoder2(torch.cat([resize_to(x, skip2), skip2], dim=1))
        x = self.decoder1(torch.cat([resize_to(x, skip1), skip1], dim=1))
        return self.head(x)
