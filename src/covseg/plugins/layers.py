"""Building blocks shared by model plugins, so that no two plugins repeat them."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvBNReLU(nn.Sequential):
    """Padded convolution, batch norm, ReLU: the unit of most segmentation heads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1):
        padding = dilation * (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def resize_to(features: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Bilinear resize of ``features`` to the height and width of ``reference``.

    The size is read from the tensor at run time, so ONNX exports keep it dynamic.
    """
    return F.interpolate(features, size=reference.shape[-2:], mode="bilinear", align_corners=False)


class OutTensor(nn.Module):
    """Wraps a torchvision segmentation model so that forward returns ``out`` as a plain tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def adapt_input_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of a first convolution that takes ``in_channels``; RGB weights are averaged over
    channels and repeated, as timm does, so pretrained filters stay meaningful."""
    if conv.in_channels == in_channels:
        return conv
    new_conv = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        mean_filter = conv.weight.mean(dim=1, keepdim=True)
        new_conv.weight.copy_(mean_filter.repeat(1, in_channels, 1, 1) * 3 / in_channels)
        if conv.bias is not None:
            new_conv.bias.copy_(conv.bias)
    return new_conv
