"""torch.distributed for ``torchrun --nproc_per_node=N -m covseg train ...``.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/PORT; :func:`setup` then joins the
process group through ``env://`` (NCCL on CUDA, gloo on the CPU), each process on its own GPU.
Without those variables training runs in one process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from covseg.core.errors import CovsegError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run's files and prints progress; the others stay quiet."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def backend_for(device: torch.device) -> str:
    """The process-group backend for ``device``: NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_device(device: torch.device, local_rank: int) -> torch.device:
    """The device of the process with ``local_rank`` on its machine, when ``device`` is the run's choice.

    On CUDA each process takes the GPU of its local rank, so ``--device cuda`` (or ``auto``) is
    the way to ask for GPUs under torchrun; ``--device cuda:N`` would put every process on the
    same GPU and is refused, as is a local rank beyond the GPUs this machine shows.
    """
    if device.type != "cuda":
        return device
    if device.index is not None:
        raise CovsegError(f"--device cuda:{device.index} pins one GPU, but under torchrun each process "
                          "takes the GPU of its LOCAL_RANK; use --device cuda or auto")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise CovsegError(
            f"torchrun started local rank {local_rank} but this machine has {count} CUDA device(s); "
            "lower --nproc_per_node"
        )
    return torch.device("cuda", local_rank)


@contextmanager
def distributed(device: torch.device) -> Iterator[DistributedContext]:
    """Join the process group when launched by torchrun (and leave it afterwards)."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        yield DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = process_device(device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend=backend_for(device),
        init_method="env://",
        rank=rank,
        world_size=world_size,
        device_id=device if device.type == "cuda" else None,
    )
    try:
        yield DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
    finally:
        dist.destroy_process_group()


def broadcast_object(context: DistributedContext, value: Any) -> Any:
    """Rank 0's ``value`` on every rank (e.g. the run folder only rank 0 created)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_sum(context: DistributedContext, tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all processes (in place; returned for chaining)."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def sync_buffers(context: DistributedContext, model: nn.Module) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank.

    DDP broadcasts buffers at the start of each forward, so after the last training step every
    rank holds running statistics of its own last batch. Evaluating and saving rank 0's buffers
    everywhere makes all ranks score the very model rank 0 writes to best.pt.
    """
    if context.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def synchronise_batch_norm(context: DistributedContext, model: nn.Module) -> nn.Module:
    """Batch norm over the global batch: SyncBatchNorm under DDP on CUDA, else ``model`` as it is.

    Each process then normalises with the statistics of all processes' slices, as one process
    with the whole batch would: the recipe means the same on one GPU or eight, and one slice per
    process still trains a model with batch norm over a 1x1 map. gloo (the CPU) cannot run
    SyncBatchNorm; there each process normalises its own share. The weights and buffers keep
    their names, so checkpoints load into the plain model.
    """
    if not synchronises_batch_norm(context):
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def synchronises_batch_norm(context: DistributedContext) -> bool:
    """Whether :func:`synchronise_batch_norm` converts models in this context."""
    return context.enabled and context.device.type == "cuda"
