"""Which training slices an epoch visits: foreground oversampling, sharded like DistributedSampler.

nnU-Net forces a third of the patches of each batch to contain foreground, so that rare lesion
classes are seen often enough (Isensee et al. 2021, Nature Methods 18:203-211, methods "network
training": "oversample_foreground_percent" 0.33). Here a share of each epoch's samples is drawn from
the training slices that hold a lesion pixel; the rest are drawn as without oversampling. The draw
depends only on (seed, epoch), so it is the same on every process, after a resume and whatever the
worker count; each process then takes every ``num_replicas``-th sample, as DistributedSampler does.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import DistributedSampler, Sampler

from covseg.core.errors import CovsegError


def lesion_indices(masks: Sequence[np.ndarray]) -> list[int]:
    """Positions of the masks (any shape, 0 = background) that hold at least one lesion pixel."""
    return [index for index, mask in enumerate(masks) if np.any(mask)]


class ForegroundSampler(Sampler[int]):
    """Epoch indices of a dataset of ``size`` slices: ``round(fraction x size)`` of them drawn from
    ``foreground`` (lesion slices, shuffled, repeated as often as needed), the others from a
    shuffle of all slices; then shuffled together and sharded over ``num_replicas`` processes.

    Epoch length and sharding match DistributedSampler (``ceil(size / num_replicas)`` per process,
    padded by repeating the first indices), so steps per epoch do not change. Raises
    :class:`CovsegError` when ``fraction`` > 0 and no training slice holds a lesion.
    """

    def __init__(self, size: int, foreground: Sequence[int], fraction: float, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0):
        if not 0.0 <= fraction <= 1.0:
            raise CovsegError(f"foreground oversampling {fraction}: must be in [0, 1]")
        if fraction > 0 and not foreground:
            raise CovsegError(f"--foreground-oversampling {fraction:g}: none of the {size} training slices "
                              "holds a lesion pixel")
        self.size = size
        self.foreground = np.asarray(foreground, dtype=np.int64)
        self.fraction = fraction
        self.num_replicas = num_replicas
        self.rank = rank
        self.seed = seed
        self.epoch = 0
        self.num_samples = math.ceil(size / num_replicas)
        self.total_size = self.num_samples * num_replicas

    @property
    def forced(self) -> int:
        """Samples per epoch (over all processes) drawn from the lesion slices."""
        return round(self.fraction * self.size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_indices(self) -> list[int]:
        """Every process's samples of this epoch together (before sharding and padding)."""
        rng = np.random.default_rng([self.seed, self.epoch])
        forced = self.forced
        repeats = math.ceil(forced / len(self.foreground)) if forced else 0
        lesion = np.concatenate([rng.permutation(self.foreground) for _ in range(repeats)] or
                                [np.zeros(0, dtype=np.int64)])[:forced]
        rest = rng.permutation(self.size)[: self.size - forced]
        return rng.permutation(np.concatenate([lesion, rest])).tolist()

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        indices += indices[: self.total_size - len(indices)]
        return iter(indices[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples


def epoch_sampler(size: int, masks: Sequence[np.ndarray], fraction: float, num_replicas: int, rank: int,
                  seed: int) -> Sampler[int]:
    """The training sampler: DistributedSampler-equivalent order without oversampling (``fraction``
    0: torch's own, so runs without it are unchanged), else :class:`ForegroundSampler`."""
    if fraction == 0:
        return DistributedSampler(range(size), num_replicas=num_replicas, rank=rank, shuffle=True,
                                  seed=seed)
    return ForegroundSampler(size, lesion_indices(masks), fraction, num_replicas, rank, seed)
