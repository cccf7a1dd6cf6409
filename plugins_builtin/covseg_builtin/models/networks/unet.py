"""UNet (Ronneberger et al., 2015) with padded convolutions and batch norm.

Four 2x down-samplings, 64 to 1024 channels; the decoder up-samples with 2x2 transposed
convolutions and pads to the skip's size, so any H, W >= 32 works, also when not divisible by 16.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from covseg.plugins.layers import ConvBNReLU


class DoubleConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class Up(nn.Module):
    """Transposed-convolution up-sampling, pad to the skip's size, concatenate, two convolutions."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(in_channels, in_channels // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(in_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        # Odd sizes lose a row or column when pooled; pad it back (zero padding when even).
        pad_h = skip.shape[-2] - x.shape[-2]
        pad_w = skip.shape[-1] - x.shape[-1]
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """(N, in_channels, H, W) float -> logits (N, num_classes, H, W); any H, W >= 32."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, base_channels: int = 64):
        super().__init__()
        widths = [base_channels * 2**level for level in range(5)]
        self.stem = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1])) for i in range(4)
        )
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(widths[0], num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
