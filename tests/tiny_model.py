"""A tiny segmentation model, installed as a real covseg plugin, for tests that train, compile and
export within seconds: conv (stride 2) - batch norm - ReLU - 1x1 head - bilinear resize back.

It has the layers whose handling the GPU path changes (convolutions autocast to bf16, batch norm,
a resize read from the input's shape at run time), at a thousandth of unet's cost.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fake_plugins import installed, write_distribution

MODEL = "tiny-segmenter"
PACKAGE = "covseg-tiny-segmenter"

PLUGIN = f'''
from covseg.plugins import ModelEntry, hookimpl


def build(num_classes=4, in_channels=3, pretrained=False):
    from covseg_tiny_network import TinySegmenter  # torch only when the model is built

    return TinySegmenter(num_classes, in_channels)


@hookimpl
def covseg_models():
    return [ModelEntry("{MODEL}", build, "Tiny conv net (covseg tests).", family="test")]
'''

NETWORK = '''
from torch import nn
from torch.nn import functional as F


class TinySegmenter(nn.Module):
    def __init__(self, num_classes=4, in_channels=3):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(in_channels, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                                      nn.ReLU())
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, images):
        logits = self.head(self.features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
'''


def write_tiny_plugin(folder: Path) -> Path:
    """Write the plugin's distribution into ``folder``; put ``folder`` on PYTHONPATH to install it."""
    write_distribution(folder, PACKAGE, "0.1", {"covseg_tiny_plugin": PLUGIN, "covseg_tiny_network": NETWORK},
                       entry_points={"tiny": "covseg_tiny_plugin"})
    return folder


@contextmanager
def tiny_model_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The plugin installed in this process (its registry rebuilt) for the duration; yields the name."""
    folder = write_tiny_plugin(tmp_path / "tiny-plugin")
    with installed(monkeypatch, folder):
        yield MODEL
