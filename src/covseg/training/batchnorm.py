"""Batch norm and small batches: find, before a run starts, a layer that cannot train on its batch.

In training mode batch norm normalises each channel by the statistics of its input; with one
value per channel (one slice reaching a 1x1 map, as in the image-pooling branch of DeepLab's ASPP)
there are none, and torch raises mid-epoch. :func:`single_value_batch_norm` finds such a layer
with one forward pass on the ``meta`` device (shapes only: no memory, no arithmetic, nothing in
the model changes), so that any model, a third party's too, is refused in one line before the run
folder exists. Under DistributedDataParallel on CUDA covseg synchronises batch norm across the
processes (:func:`covseg.training.distributed.synchronise_batch_norm`), so there the statistics
span the global batch.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable

import torch
from torch import nn


class _Found(Exception):
    def __init__(self, layer: str):
        super().__init__(layer)
        self.layer = layer


def single_value_batch_norm(
    build: Callable[[], nn.Module], batch: int, height: int, width: int, in_channels: int = 3
) -> str | None:
    """The first batch-norm layer (its module name) that sees one value per channel when the model
    ``build()`` makes trains on ``batch`` x ``in_channels`` x ``height`` x ``width``, else None.

    The model is built and run on the ``meta`` device. A model that cannot be built or run there
    (data-dependent code such as ``.item()``, weights put on a device explicitly) is probed where it
    is, with its buffers, training modes and the RNG states restored afterwards.
    """
    shape = (batch, in_channels, height, width)
    model = None
    with contextlib.suppress(Exception), torch.device("meta"):
        model = build()
    if model is not None and all(tensor.is_meta for tensor in itertools.chain(model.parameters(),
                                                                               model.buffers())):
        try:
            return _probe(model, torch.empty(shape, device="meta"))
        except _Found as found:
            return found.layer
        except Exception:  # e.g. .item() on a meta tensor: probe a real model below
            model = None
    return _probe_in_place(model if model is not None else build(), shape)


def _probe_in_place(model: nn.Module, shape: tuple[int, ...]) -> str | None:
    """:func:`_probe` on a real model, leaving its buffers, modes and the RNG states as they were."""
    buffers = [buffer.clone() for buffer in model.buffers()]
    modes = [(module, module.training) for module in model.modules()]
    device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            return _probe(model, torch.zeros(shape, device=device))
    except _Found as found:
        return found.layer
    except Exception:  # the model fails for another reason; training will say why
        return None
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), buffers, strict=True):
                buffer.copy_(value)
        for module, training in modes:
            module.training = training


def _probe(model: nn.Module, inputs: torch.Tensor) -> str | None:
    names = {module: name for name, module in model.named_modules()}

    def check(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        shape = args[0].shape
        if shape[0] * math.prod(shape[2:]) == 1:
            raise _Found(names[module] or type(module).__name__)

    handles = [module.register_forward_pre_hook(check) for module in model.modules()
               if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    if not handles:
        return None
    try:
        model.train()
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return None
