"""One training epoch: the step covseg runs, shared by ``covseg train`` and benchmarks/train_speed.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class StepSettings:
    """How a step runs on its device.

    On CUDA: bf16 autocast (when ``amp``) and channels-last tensors, the two that roughly double
    the throughput of these convolutional networks on tensor cores. On the CPU: float32 and the
    default layout (bf16 brings no gain there and costs accuracy).
    """

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def for_device(cls, device: torch.device, amp: bool = True) -> StepSettings:
        cuda = device.type == "cuda"
        return cls(device=device, autocast_dtype=torch.bfloat16 if cuda and amp else None, channels_last=cuda)

    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``, for logs and tables."""
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_device(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Asynchronous host-to-device copies (the loader pins memory on CUDA)."""
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        images = images.to(self.device, non_blocking=True, memory_format=memory_format)
        return images, masks.to(self.device, non_blocking=True)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device (and to channels-last on CUDA)."""
        model = model.to(self.device)
        return model.to(memory_format=torch.channels_last) if self.channels_last else model


@dataclass
class EpochResult:
    """What one process saw in one epoch."""

    loss_sum: torch.Tensor
    """Sum of per-step mean losses (float64, on the device; NaN once any step was NaN)."""
    steps: int
    images: int
    seconds: float


ProgressCallback = Callable[[int, torch.Tensor], None]
"""``on_progress(steps_done, loss_sum)``: called every few steps; reading the tensor syncs the device."""


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    settings: StepSettings,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every: int = 10,
) -> EpochResult:
    """Train ``model`` for one pass over ``loader``.

    The loss stays on the device (no host sync per step); the caller checks it for NaN at the end
    of the epoch, when all processes can agree to stop together.
    """
    model.train()
    loss_sum = torch.zeros((), dtype=torch.float64, device=settings.device)
    steps = images_seen = 0
    start = time.perf_counter()
    for images, masks in loader:
        images, masks = settings.to_device(images, masks)
        with settings.autocast():
            logits = model(images)
        loss = loss_fn(logits, masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach()
        steps += 1
        images_seen += images.shape[0]
        if on_progress is not None and steps % progress_every == 0:
            on_progress(steps, loss_sum)
    if settings.device.type == "cuda":
        torch.cuda.synchronize(settings.device)
    return EpochResult(
        loss_sum=loss_sum, steps=steps, images=images_seen, seconds=time.perf_counter() - start
    )


def recalibrate_batch_norm(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], settings: StepSettings
) -> None:
    """Recompute batch-norm running statistics of the current weights over ``loader``.

    ``torch.optim.swa_utils.update_bn`` averages the batch statistics over the whole pass, so eval
    mode then normalises with statistics of these weights rather than a lagging running average.
    """
    images = (settings.to_device(images, masks)[0] for images, masks in loader)
    with settings.autocast():
        torch.optim.swa_utils.update_bn(images, model)
