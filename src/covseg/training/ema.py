"""An exponential moving average (EMA) of a model's weights, for validation and best.pt.

After every optimiser step ``ema = decay x ema + (1 - decay) x weights`` (the first update copies
the weights). Averaging the weights of the last ~1 / (1 - decay) steps smooths the noise of the
last updates; it is the "mean teacher" / Polyak averaging used by many segmentation recipes
(Polyak & Juditsky 1992; Tarvainen & Valpola 2017). torch's ``AveragedModel`` with
``get_ema_multi_avg_fn`` does the averaging; batch-norm buffers are averaged too
(``use_buffers=True``), and precise batch norm (``recalibrate_bn``) recomputes them on the
averaged weights before each validation. Its state_dict holds tensors only, so last.pt stays
loadable with ``weights_only=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class WeightAverage:
    """The EMA of ``model``'s parameters and buffers with ``decay`` (0 < decay < 1), per step.

    ``module`` is the averaged copy (same class, device and memory format as ``model``).
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights in (call after each optimiser step)."""
        self.averaged.update_parameters(model)

    def state_dict(self) -> dict[str, Any]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.averaged.load_state_dict(state)
