"""Which slices train, select and test a model: seeded, independent of input order, saved with each run.

Ids are sorted before shuffling, so the same ids, fractions and seed give the same split however
the dataset lists them. Two kinds of split file, both read by :func:`read_split_file`:

- :class:`Split` (``split.json`` of a run): training, validation and held-out test ids. The test
  ids (``--test-fraction``) are carved out first, then the validation ids from what is left, so
  that a test slice can reach neither training nor model selection. Files written before the test
  set existed have no ``test_ids``: they read as an empty test set.
- :class:`Folds` (``split.json`` of a cross-validation or of a benchmark run with ``--folds K``):
  the test ids and K disjoint folds of the other ids; fold k validates the model trained on the
  other K-1 folds (:meth:`Folds.split`).

Training writes the file into its run folder; evaluation and the benchmark read it back, so all of
them use the identical slices. Training also records a content hash of each slice
(``slice_hashes``, :mod:`covseg.data.fingerprint`), so that evaluation knows a training slice under
another name; files without it (older runs, hand-written splits) read as an empty mapping.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covseg.core.errors import CovsegError
from covseg.files import read_json_object, write_json

FORMAT = "covseg-split-1"
FOLDS_FORMAT = "covseg-folds-1"
TEST_STREAM = 0x7E57
"""Second word of the test set's random stream, so that carving a test set leaves the validation
draw of the same seed on its own stream (``np.random.default_rng([seed, TEST_STREAM])``)."""


@dataclass
class Split:
    """Slice ids on each side of the split and how they were drawn.

    ``test_ids``: held out from training and model selection, scored once at the end (empty when
    the run has no test set carved from its data). ``fold``/``folds``: which of how many
    cross-validation folds this split is (None for an ordinary split). ``slice_hashes``: id ->
    SHA-256 of the slice's pixels as training read them (:func:`covseg.data.fingerprint.slice_hash`);
    empty when not recorded; splits of the same ids compare equal whatever their hashes.
    """

    train_ids: list[str]
    val_ids: list[str]
    seed: int
    val_fraction: float | None
    test_ids: list[str] = field(default_factory=list)
    test_fraction: float | None = None
    fold: int | None = None
    folds: int | None = None
    slice_hashes: dict[str, str] = field(default_factory=dict, compare=False)  # a record, not the split

    def save(self, path: Path) -> None:
        """Write the split as JSON, atomically."""
        write_json(path, {"format": FORMAT, **asdict(self)})

    @classmethod
    def load(cls, path: Path) -> Split:
        """Read a split file written by :meth:`save`; one-line errors name the file."""
        split = read_split_file(path)
        if isinstance(split, Folds):
            raise CovsegError(f"split file {path} holds {len(split.folds)} cross-validation folds, not one "
                              f"split; use it with --folds {len(split.folds)}")
        return split

    @classmethod
    def from_record(cls, record: dict[str, Any], path: Path) -> Split:
        ids = {key: _ids(record, key, path) for key in ("train_ids", "val_ids")}
        test_ids = _ids(record, "test_ids", path) if "test_ids" in record else []
        try:
            split = cls(
                train_ids=ids["train_ids"],
                val_ids=ids["val_ids"],
                seed=int(record["seed"]),
                val_fraction=_optional_float(record.get("val_fraction")),
                test_ids=test_ids,
                test_fraction=_optional_float(record.get("test_fraction")),
                fold=_optional_int(record.get("fold")),
                folds=_optional_int(record.get("folds")),
                slice_hashes=_hashes(record, path),
            )
        except KeyError as error:
            raise CovsegError(f"split file {path} is malformed: it has no '{error.args[0]}'") from None
        except (TypeError, ValueError) as error:
            raise CovsegError(f"split file {path} is malformed: {type(error).__name__} {error}") from None
        _check_disjoint(path, {"train": split.train_ids, "validation": split.val_ids, "test": split.test_ids})
        return split

    @property
    def all_ids(self) -> list[str]:
        return [*self.train_ids, *self.val_ids, *self.test_ids]

    def check_ids(self, available: Iterable[str], where: str) -> None:
        """Raise when the split names slices that the data (``where``, for the message) lacks."""
        _check_known(self.all_ids, available, where)


@dataclass
class Folds:
    """K disjoint folds of the non-test ids (each sorted) and the held-out test ids; ``slice_hashes``
    as in :class:`Split`."""

    folds: list[list[str]]
    seed: int
    test_ids: list[str] = field(default_factory=list)
    test_fraction: float | None = None
    slice_hashes: dict[str, str] = field(default_factory=dict, compare=False)  # a record, not the split

    def save(self, path: Path) -> None:
        write_json(path, {"format": FOLDS_FORMAT, **asdict(self)})

    @classmethod
    def from_record(cls, record: dict[str, Any], path: Path) -> Folds:
        folds = record.get("folds")
        if (not isinstance(folds, list) or len(folds) < 2
                or not all(isinstance(fold, list) and all(isinstance(name, str) for name in fold)
                           for fold in folds)):
            raise CovsegError(f"split file {path}: 'folds' must be a list of at least 2 lists of slice ids")
        test_ids = _ids(record, "test_ids", path) if "test_ids" in record else []
        try:
            result = cls([list(fold) for fold in folds], int(record["seed"]), test_ids,
                         _optional_float(record.get("test_fraction")), _hashes(record, path))
        except KeyError as error:
            raise CovsegError(f"split file {path} is malformed: it has no '{error.args[0]}'") from None
        except (TypeError, ValueError) as error:
            raise CovsegError(f"split file {path} is malformed: {type(error).__name__} {error}") from None
        groups = {f"fold {index}": fold for index, fold in enumerate(result.folds)}
        _check_disjoint(path, {**groups, "test": result.test_ids})
        if not all(result.folds):
            raise CovsegError(f"split file {path}: a fold holds no slices")
        return result

    @property
    def count(self) -> int:
        return len(self.folds)

    def describe(self) -> str:
        """``2 folds of 5 slices each``, or ``3 folds of 5 and 6 slices`` when their sizes differ."""
        sizes = [str(size) for size in sorted({len(fold) for fold in self.folds})]
        if len(sizes) == 1:
            return f"{self.count} folds of {sizes[0]} slices each"
        return f"{self.count} folds of {', '.join(sizes[:-1])} and {sizes[-1]} slices"

    @property
    def pool(self) -> list[str]:
        """Every non-test id (the union of the folds), sorted."""
        return sorted(name for fold in self.folds for name in fold)

    def split(self, fold: int) -> Split:
        """Fold ``fold`` (0-based) validates; the other folds train; the test ids stay held out."""
        if not 0 <= fold < self.count:
            raise CovsegError(f"fold {fold} does not exist: the split has folds 0..{self.count - 1}")
        val = set(self.folds[fold])
        train = [name for name in self.pool if name not in val]
        return Split(train_ids=train, val_ids=list(self.folds[fold]), seed=self.seed, val_fraction=None,
                     test_ids=list(self.test_ids), test_fraction=self.test_fraction, fold=fold,
                     folds=self.count, slice_hashes=dict(self.slice_hashes))

    def check_ids(self, available: Iterable[str], where: str) -> None:
        _check_known([*self.pool, *self.test_ids], available, where)


def read_split_file(path: Path) -> Split | Folds:
    """A :class:`Split` or :class:`Folds` file, told apart by its format tag; one-line errors."""
    path = Path(path)
    record = read_json_object(path, " (give the split.json of a run or benchmark)")
    kind = record.get("format")
    if kind == FORMAT:
        return Split.from_record(record, path)
    if kind == FOLDS_FORMAT:
        return Folds.from_record(record, path)
    raise CovsegError(f"split file {path} is not a covseg split (no '{FORMAT}' format tag)")


def carve_test(ids: Sequence[str], test_fraction: float | None, seed: int) -> tuple[list[str], list[str]]:
    """(the rest, the test ids): round(fraction x count) ids drawn with ``seed``, both sorted.

    None or 0 carves nothing. A non-zero fraction takes at least one slice and leaves at least two
    (one to train on, one to validate on).
    """
    names = _unique_sorted(ids)
    if not test_fraction:
        return names, []
    if not 0.0 < test_fraction < 1.0:
        raise CovsegError(f"test fraction {test_fraction} must be above 0 and below 1")
    count = len(names)
    if count < 3:
        raise CovsegError(f"{count} slice(s) cannot be split into training, validation and test")
    test_count = min(max(math.floor(count * test_fraction + 0.5), 1), count - 2)
    order = np.random.default_rng([seed, TEST_STREAM]).permutation(count)
    test = {names[index] for index in order[:test_count]}
    return [name for name in names if name not in test], [name for name in names if name in test]


def make_split(ids: Sequence[str], val_fraction: float = 0.2, seed: int = 0,
               test_fraction: float | None = None) -> Split:
    """Carve ``test_fraction`` of the ids out as the test set (:func:`carve_test`), then shuffle the
    rest with ``seed`` and put round(val_fraction x rest) of them in validation.

    A non-zero validation fraction keeps at least one slice on each side. Without a test set the
    split is the one covseg made before test sets existed.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise CovsegError(f"validation fraction {val_fraction} must be at least 0 and below 1")
    names, test_ids = carve_test(ids, test_fraction, seed)
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
        test_ids=test_ids,
        test_fraction=test_fraction or None,
    )


def make_folds(ids: Sequence[str], folds: int, seed: int = 0, test_ids: Sequence[str] = (),
               test_fraction: float | None = None) -> Folds:
    """K folds of ``ids`` (the non-test ids): shuffled with ``seed``, dealt into K parts whose sizes
    differ by at most one, each part sorted. ``test_ids`` are recorded, never dealt."""
    names = _unique_sorted(ids)
    if folds < 2:
        raise CovsegError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if folds > len(names):
        raise CovsegError(f"--folds {folds}: only {len(names)} slice(s) outside the test set; each fold "
                          "needs at least one")
    overlap = set(names) & set(test_ids)
    if overlap:
        raise CovsegError(f"slice '{min(overlap)}' is both a test slice and in a fold")
    order = np.random.default_rng(seed).permutation(len(names))
    parts = [sorted(names[index] for index in part) for part in np.array_split(order, folds)]
    return Folds(parts, seed, sorted(test_ids), test_fraction)


def _unique_sorted(ids: Sequence[str]) -> list[str]:
    names = sorted(ids)
    if len(set(names)) != len(names):
        duplicate = next(a for a, b in itertools.pairwise(names) if a == b)
        raise CovsegError(f"slice id '{duplicate}' appears twice; ids must be unique")
    return names


def _ids(record: dict[str, Any], key: str, path: Path) -> list[str]:
    ids = record.get(key)
    if not isinstance(ids, list) or not all(isinstance(name, str) for name in ids):
        raise CovsegError(f"split file {path}: '{key}' must be a list of slice id strings")
    return list(ids)


def _hashes(record: dict[str, Any], path: Path) -> dict[str, str]:
    hashes = record.get("slice_hashes", {})
    if not isinstance(hashes, dict) or not all(isinstance(value, str) for value in hashes.values()):
        raise CovsegError(f"split file {path}: 'slice_hashes' must map slice ids to hash strings")
    return dict(hashes)


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _check_disjoint(path: Path, groups: dict[str, list[str]]) -> None:
    seen: dict[str, str] = {}
    for group, ids in groups.items():
        for name in ids:
            if name in seen and seen[name] == group:
                raise CovsegError(f"split file {path} lists '{name}' twice in {group}")
            if name in seen:
                other = "train and validation" if {seen[name], group} == {"train", "validation"} \
                    else f"{seen[name]} and {group}"
                raise CovsegError(f"split file {path} puts '{name}' in both {other}")
            seen[name] = group


def _check_known(ids: Iterable[str], available: Iterable[str], where: str) -> None:
    known = set(available)
    missing = [name for name in ids if name not in known]
    if missing:
        raise CovsegError(f"the split lists {len(missing)} slice ids that {where} does not have "
                          f"(first: '{missing[0]}')")
