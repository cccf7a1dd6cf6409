"""One training epoch: the step covseg runs, shared by ``covseg train`` and benchmarks/train_speed.py."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from covseg.devices import autocast_dtype, default_channels_last, default_precision
from covseg.training.config import TrainConfig

DEVICE_DEFAULT = "default on "
"""Source prefix of a precision or layout that followed the device (``default on cuda``): re-derived
when the run resumes on another device, unlike a value the user chose."""


def device_defaults(config: TrainConfig, device: torch.device) -> TrainConfig:
    """``config`` with ``precision`` and ``channels_last`` decided for ``device``.

    A value left to the default (None), or one that only followed the device a run was on before
    it resumed here, becomes this device's default (:func:`covseg.devices.default_precision`,
    :func:`~covseg.devices.default_channels_last`), recorded as ``default on <device type>``.
    A value the user chose stays, on any device: bf16 and channels-last run on the CPU too.
    """
    defaults = {"precision": default_precision(device), "channels_last": default_channels_last(device)}
    sources = dict(config.sources)
    changes = {}
    for name, value in defaults.items():
        if getattr(config, name) is None or sources.get(name, "").startswith(DEVICE_DEFAULT):
            changes[name] = value
            sources[name] = f"{DEVICE_DEFAULT}{device.type}"
    return dataclasses.replace(config, **changes, sources=sources) if changes else config


@dataclass(frozen=True)
class StepSettings:
    """How a step runs on its device: autocast dtype and memory format.

    bf16 autocast runs the convolutions and matrix products in bfloat16 while the weights, the
    optimiser state and the loss stay float32 (the losses cast logits to float32 first); bf16
    keeps float32's exponent range, so no loss scaling is needed. Channels-last (NHWC) is the
    layout cuDNN's tensor-core kernels read without transposes. On CUDA the two together roughly
    double the throughput of these networks; both also run on the CPU.
    """

    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool

    @classmethod
    def for_device(
        cls, device: torch.device, precision: str | None = None, channels_last: bool | None = None
    ) -> StepSettings:
        """The settings for ``device``; ``precision`` (``bf16``/``fp32``) and ``channels_last``
        default to the device's (bf16 and channels-last on CUDA, fp32 and contiguous elsewhere)."""
        precision = precision or default_precision(device)
        layout = default_channels_last(device) if channels_last is None else channels_last
        return cls(device=device, autocast_dtype=autocast_dtype(precision), channels_last=layout)

    @classmethod
    def for_config(cls, config: TrainConfig, device: torch.device) -> StepSettings:
        """The settings a run's ``config`` asks for on ``device``."""
        return cls.for_device(device, config.precision, config.channels_last)

    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``, for logs and tables."""
        return "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def describe(self) -> str:
        """``bf16, channels-last`` or ``fp32``, for logs and tables."""
        return f"{self.precision}, channels-last" if self.channels_last else self.precision

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_device(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Asynchronous host-to-device copies (the loader pins memory on CUDA), images in the layout."""
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        return images, masks.to(self.device, non_blocking=True)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device, in the layout (the weights stay float32)."""
        return model.to(self.device, memory_format=self.memory_format)


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
    after_step: Callable[[], None] | None = None,
) -> EpochResult:
    """Train ``model`` for one pass over ``loader``.

    ``after_step`` runs after every optimiser (and scheduler) step, e.g. to update a weight average.

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
        if after_step is not None:
            after_step()
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
