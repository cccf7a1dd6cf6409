"""The train/validation split: seeded, independent of input order, saved with each run.

Ids are sorted before shuffling, so the same ids, fraction and seed give the same split however
the dataset lists them. Training writes ``split.json`` into its run folder; evaluation and the
benchmark read it back (``Split.load``), so all three use the identical validation slices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from covseg.core.errors import CovsegError
from covseg.files import read_json_object, write_json

FORMAT = "covseg-split-1"


@dataclass
class Split:
    """Slice ids on each side of the split and how they were drawn."""

    train_ids: list[str]
    val_ids: list[str]
    seed: int
    val_fraction: float

    def save(self, path: Path) -> None:
        """Write the split as JSON, atomically."""
        write_json(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: Path) -> Split:
        """Read a split file written by :meth:`save`; one-line errors name the file."""
        path = Path(path)
        record = read_json_object(path, " (give the split.json of a run or benchmark)")
        if record.get("format") != FORMAT:
            raise CovsegError(f"split file {path} is not a covseg split (no '{FORMAT}' format tag)")
        for key in ("train_ids", "val_ids"):
            ids = record.get(key)
            if not isinstance(ids, list) or not all(isinstance(name, str) for name in ids):
                raise CovsegError(f"split file {path}: '{key}' must be a list of slice id strings")
        try:
            split = cls(
                train_ids=list(record["train_ids"]),
                val_ids=list(record["val_ids"]),
                seed=int(record["seed"]),
                val_fraction=float(record["val_fraction"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise CovsegError(f"split file {path} is malformed: {type(error).__name__} {error}") from None
        overlap = set(split.train_ids) & set(split.val_ids)
        if overlap:
            raise CovsegError(f"split file {path} puts '{min(overlap)}' in both train and validation")
        return split

    def check_ids(self, available: Iterable[str], where: str) -> None:
        """Raise when the split names slices that the data (``where``, for the message) lacks."""
        known = set(available)
        missing = [name for name in (*self.train_ids, *self.val_ids) if name not in known]
        if missing:
            raise CovsegError(f"the split lists {len(missing)} slice ids that {where} does not have "
                              f"(first: '{missing[0]}')")


def make_split(ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Shuffle the sorted ids with ``seed`` and put round(fraction x count) of them in validation.

    A non-zero fraction keeps at least one slice on each side.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CovsegError(f"validation fraction {val_fraction} must be at least 0 and below 1")
    names = sorted(ids)
    if len(set(names)) != len(names):
        duplicate = next(a for a, b in itertools.pairwise(names) if a == b)
        raise CovsegError(f"slice id '{duplicate}' appears twice; ids must be unique")
    count = len(names)
    val_count = math.floor(count * val_fraction + 0.5)
    if val_fraction > 0:
        if count < 2:
            raise CovsegError(f"{count} slice(s) cannot be split into training and validation")
        val_count = min(max(val_count, 1), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    val = {names[index] for index in order[:val_count]}
    return Split(
        train_ids=[name for name in names if name not in val],
        val_ids=[name for name in names if name in val],
        seed=seed,
        val_fraction=val_fraction,
    )
