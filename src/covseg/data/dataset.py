"""The torch Dataset that training and evaluation iterate: slices decoded once, kept in memory.

At construction every slice is normalised (:func:`covseg.data.intensity.normalise_channels`) and
resized once (:func:`covseg.data.transforms.resize_pair`, the resize ``covseg predict`` uses too); a
step only augments and copies arrays, no file I/O. Augmentation draws its random numbers from a seed
derived from (seed, epoch, slice index), so a sample is the same whichever DataLoader worker makes
it and however many workers there are; ``set_epoch`` changes it per epoch.
The epoch lives in shared memory, so persistent workers see ``set_epoch`` too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.augment import AugmentationConfig, build_augmentation
from covseg.data.intensity import Normalisation, normalise_channels
from covseg.data.transforms import resize_pair


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one sample: independent of worker, batch order and worker count."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SliceDataset(Dataset):
    """(image float32 (3, H, W) in [0, 1], mask int64 (H, W)) pairs of the given slice ids."""

    def __init__(
        self,
        slices: CTSlices,
        ids: Sequence[str],
        normalisation: Normalisation,
        image_size: int | None = None,
        augmentation: AugmentationConfig | None = None,
        seed: int = 0,
    ):
        if slices.masks is None:
            raise CovsegError(f"{slices.source} has no label masks; training and evaluation need them")
        if image_size is not None and image_size < 1:
            raise CovsegError(f"image size {image_size} must be a positive number of pixels")
        position = {name: index for index, name in enumerate(slices.ids)}
        missing = [name for name in ids if name not in position]
        if missing:
            raise CovsegError(f"{len(missing)} slice ids are not in {slices.source} (first: '{missing[0]}')")
        self.ids = list(ids)
        self.normalisation = normalisation
        self.image_size = image_size
        self.seed = seed
        self.images: list[np.ndarray] = []  # float32 (H, W, 1 or 3) in [0, 1]
        self.masks: list[np.ndarray] = []  # uint8 (H, W)
        for name in self.ids:
            index = position[name]
            image = normalise_channels(slices.images[index], slices.intensity, normalisation)
            mask = np.ascontiguousarray(slices.masks[index], dtype=np.uint8)
            if image_size is not None:
                image, mask = resize_pair(image, mask, image_size)
            self.images.append(np.ascontiguousarray(image))
            self.masks.append(mask)
        self.augmentation = augmentation
        self._pipeline = build_augmentation(augmentation, seed) if augmentation is not None else None
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation (call before iterating the epoch's DataLoader)."""
        self._epoch.fill_(int(epoch))

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.images[index], self.masks[index]
        if self._pipeline is not None:
            self._pipeline.set_random_seed(sample_seed(self.seed, int(self._epoch), index))
            augmented = self._pipeline(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]
        # One copy into a new (3, H, W) tensor, replicating a single channel on the way: a caller's
        # in-place change must never reach the slices kept in memory.
        tensor = torch.from_numpy(image).permute(2, 0, 1).expand(3, -1, -1)
        return tensor.clone(memory_format=torch.contiguous_format), torch.from_numpy(mask.astype(np.int64))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed numpy and ``random`` in each worker.

    torch gives every worker the seed ``base_seed + worker_id`` (base_seed from the DataLoader's
    ``generator``); this passes it on to numpy and ``random`` for any randomness outside
    :class:`SliceDataset`'s own per-sample seeds. It deliberately leaves OpenCV's thread count
    alone: ``cv2.setNumThreads`` in a forked worker deadlocks once the parent has used OpenCV's
    thread pool; set it in the parent before creating the DataLoader instead.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
