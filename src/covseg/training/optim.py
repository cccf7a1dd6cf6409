"""Optimisers and learning-rate schedules named in training configs."""

from __future__ import annotations

import math

import torch
from torch import nn

from covseg.core.errors import CovsegError
from covseg.training.config import OPTIMIZERS, SCHEDULERS


def build_optimizer(name: str, model: nn.Module, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """``adam`` (the reference study's), ``adamw`` or ``sgd`` (Nesterov, ``momentum``; nnU-Net trains
    with SGD, Nesterov momentum 0.99, lr 0.01 and the ``poly`` schedule: Isensee et al. 2021,
    Nature Methods 18:203-211, methods "network training").

    With weight decay, biases and normalisation parameters (tensors of one dimension) are not
    decayed: shrinking a batch-norm scale towards zero only fights the normalisation.
    """
    decayed = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    undecayed = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decayed, "weight_decay": weight_decay}, {"params": undecayed, "weight_decay": 0.0}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True)
    raise CovsegError(f"optimizer '{name}' is unknown; choose one of {', '.join(OPTIMIZERS)}")


def lr_factor(step: int, total_steps: int, warmup_steps: int, decay: str) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based).

    Linear warm-up from 1/warmup_steps to 1 (none when ``warmup_steps`` is 0), then ``cosine``
    (to 0 at ``total_steps``) or ``poly`` ((1 - progress)^0.9: DeepLab, Chen et al. 2018, and
    nnU-Net, Isensee et al. 2021, which steps it per epoch; here it is stepped per batch) decay.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return (1.0 - progress) ** 0.9


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int
) -> torch.optim.lr_scheduler.LambdaLR | None:
    """A per-step schedule (``scheduler.step()`` after every optimiser step), or None for ``none``.

    ``warmup-cosine``, ``warmup-poly`` (``warmup_steps`` of linear warm-up first) or ``poly``
    (no warm-up: ``warmup_steps`` is ignored).

    Its state_dict holds only counters, so checkpoints stay loadable with ``weights_only=True``.
    """
    if name == "none":
        return None
    if name not in SCHEDULERS:
        raise CovsegError(f"scheduler '{name}' is unknown; choose one of {', '.join(SCHEDULERS)}")
    if not name.startswith("warmup-"):
        warmup_steps = 0
    decay = name.removeprefix("warmup-")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, decay)
    )
