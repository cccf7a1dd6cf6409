"""A content hash per slice, so that a copy of a run's data under other names is still recognised.

``split.json`` records the hash of every slice of a run's split
(:attr:`covseg.data.split.Split.slice_hashes`); ``covseg eval`` compares the slices it scores
against the training slices by id *and* by hash, so a renamed or re-exported copy of the training
data is not mistaken for held-out data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

from covseg.core.entries import CTSlices


def slice_hash(image: np.ndarray) -> str:
    """SHA-256 (hex, 64 characters) of an image array as read: its dtype, shape and C-order bytes.

    Taken before any resizing or normalisation, so the same pixels read the same way (the same
    dtype: a PNG as uint8, a NIfTI slice as float HU) give the same hash whatever the file is called.
    """
    array = np.ascontiguousarray(image)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def slice_hashes(slices: CTSlices, ids: Iterable[str]) -> dict[str, str]:
    """``{id: slice_hash(image)}`` for the slices ``ids`` of ``slices`` (each id must be there)."""
    index = {name: position for position, name in enumerate(slices.ids)}
    return {name: slice_hash(slices.images[index[name]]) for name in ids}
