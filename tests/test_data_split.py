"""The seeded split: deterministic, independent of input order, saved and loaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from covseg.core.errors import CovsegError
from covseg.data.fingerprint import slice_hash
from covseg.data.split import Folds, Split, carve_test, make_folds, make_split, read_split_file

IDS = [f"medseg_{number:03d}" for number in range(1, 101)]


def test_eighty_twenty_deterministic_and_order_independent():
    split = make_split(IDS, val_fraction=0.2, seed=0)
    assert len(split.train_ids) == 80 and len(split.val_ids) == 20
    assert sorted(split.train_ids + split.val_ids) == IDS and not set(split.train_ids) & set(split.val_ids)
    assert split == make_split(list(reversed(IDS)), val_fraction=0.2, seed=0)
    assert split.val_ids == sorted(split.val_ids)
    assert make_split(IDS, seed=1).val_ids != split.val_ids
    assert len(make_split(IDS[:80], val_fraction=0.2).val_ids) == 16
    assert len(make_split(IDS, val_fraction=0.1).val_ids) == 10


def test_tiny_sets_keep_a_slice_on_each_side():
    assert len(make_split(IDS[:2], val_fraction=0.2).val_ids) == 1
    assert make_split(IDS[:3], val_fraction=0.0).val_ids == []
    with pytest.raises(CovsegError, match="cannot be split"):
        make_split(IDS[:1], val_fraction=0.2)
    with pytest.raises(CovsegError, match="must be at least 0 and below 1"):
        make_split(IDS, val_fraction=1.0)
    with pytest.raises(CovsegError, match="'medseg_001' appears twice"):
        make_split([*IDS, "medseg_001"])


def test_save_and_load_round_trip(tmp_path):
    split = make_split(IDS, seed=3)
    path = tmp_path / "run" / "split.json"
    split.save(path)
    assert Split.load(path) == split
    assert json.loads(path.read_text())["format"] == "covseg-split-1"
    split.check_ids(IDS, "the data")
    with pytest.raises(CovsegError, match="lists 20 slice ids that the data does not have"):
        split.check_ids(split.train_ids, "the data")


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('{"train_ids": []}', "is not a covseg split"),
    ('{"format": "covseg-split-1", "train_ids": ["a"]}', "'val_ids' must be a list"),
    ('{"format": "covseg-split-1", "train_ids": ["a"], "val_ids": ["a"], "seed": 0, "val_fraction": 0.5}',
     "puts 'a' in both train and validation"),
    ('{"format": "covseg-split-1", "train_ids": ["a"], "val_ids": ["b"]}', "is malformed: it has no 'seed'$"),
    ('{"format": "covseg-split-1", "train_ids": ["a"], "val_ids": ["b"], "seed": "x"}',
     "is malformed: ValueError"),
])
def test_bad_split_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CovsegError, match=message) as error:
        Split.load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


# ---- the test set and the folds ---------------------------------------------------------------
def test_test_set_is_carved_first_seeded_and_leaves_the_old_split_alone():
    split = make_split(IDS, val_fraction=0.2, seed=0, test_fraction=0.2)
    assert len(split.test_ids) == 20 and len(split.val_ids) == 16 and len(split.train_ids) == 64
    assert sorted(split.all_ids) == IDS
    assert not set(split.test_ids) & (set(split.train_ids) | set(split.val_ids))
    assert split == make_split(list(reversed(IDS)), val_fraction=0.2, seed=0, test_fraction=0.2)
    assert make_split(IDS, seed=1, test_fraction=0.2).test_ids != split.test_ids
    # Without a test set the split is the one covseg always made (seed 0: these exact ids).
    plain = make_split(IDS, val_fraction=0.2, seed=0)
    assert plain.test_ids == [] and plain == make_split(IDS, val_fraction=0.2, seed=0, test_fraction=None)
    assert len(make_split(IDS[:3], val_fraction=0.2, test_fraction=0.9).test_ids) == 1  # leaves 2
    with pytest.raises(CovsegError, match="cannot be split into training, validation and test"):
        make_split(IDS[:2], test_fraction=0.5)


def test_split_files_with_test_ids_round_trip_and_old_files_have_none(tmp_path):
    split = make_split(IDS, seed=3, test_fraction=0.1)
    path = tmp_path / "split.json"
    split.save(path)
    assert Split.load(path) == split
    old = {"format": "covseg-split-1", "train_ids": IDS[:90], "val_ids": IDS[90:], "seed": 0,
           "val_fraction": 0.1}
    path.write_text(json.dumps(old))
    assert Split.load(path).test_ids == []
    path.write_text(json.dumps({**old, "test_ids": [IDS[0]]}))
    with pytest.raises(CovsegError, match=f"puts '{IDS[0]}' in both train and test"):
        Split.load(path)
    path.write_text(json.dumps({**old, "test_ids": [IDS[95]]}))
    with pytest.raises(CovsegError, match=f"puts '{IDS[95]}' in both validation and test"):
        Split.load(path)


def test_slice_hashes_round_trip_in_splits_and_folds_and_old_files_have_none(tmp_path):
    """split.json's slice_hashes (id -> SHA-256 of the pixels) survive save/load and reach each fold."""
    image = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert slice_hash(image) == hashlib.sha256(b"|u1(3, 4)" + image.tobytes()).hexdigest()
    assert slice_hash(image.astype(np.int16)) != slice_hash(image)  # dtype and shape count, as read
    assert slice_hash(image.reshape(4, 3)) != slice_hash(image)
    assert slice_hash(np.asfortranarray(image)) == slice_hash(image)
    hashes = {name: f"{index:064x}" for index, name in enumerate(IDS)}
    split = dataclasses.replace(make_split(IDS, seed=3), slice_hashes=hashes)
    path = tmp_path / "split.json"
    split.save(path)
    assert Split.load(path) == split and Split.load(path).slice_hashes == hashes
    folds = dataclasses.replace(make_folds(IDS, 2), slice_hashes=hashes)
    folds.save(path)
    assert read_split_file(path).split(1).slice_hashes == hashes
    old = {"format": "covseg-split-1", "train_ids": IDS[:90], "val_ids": IDS[90:], "seed": 0,
           "val_fraction": 0.1}
    path.write_text(json.dumps(old))
    assert Split.load(path).slice_hashes == {}
    path.write_text(json.dumps({**old, "slice_hashes": ["a"]}))
    with pytest.raises(CovsegError) as error:
        Split.load(path)
    assert str(error.value) == f"split file {path}: 'slice_hashes' must map slice ids to hash strings"


def test_folds_are_disjoint_cover_the_non_test_ids_and_split_by_fold(tmp_path):
    pool, test_ids = carve_test(IDS, 0.2, seed=0)
    folds = make_folds(pool, 5, seed=0, test_ids=test_ids)
    assert [len(fold) for fold in folds.folds] == [16] * 5 and folds.pool == pool
    assert sorted(name for fold in folds.folds for name in fold) == pool
    assert make_folds(list(reversed(pool)), 5, seed=0, test_ids=test_ids) == folds
    assert [len(fold) for fold in make_folds(IDS[:11], 3).folds] == [4, 4, 3]
    for index in range(5):
        split = folds.split(index)
        assert split.val_ids == folds.folds[index] and split.test_ids == test_ids
        assert sorted(split.train_ids + split.val_ids) == pool and split.fold == index and split.folds == 5
    path = tmp_path / "split.json"
    folds.save(path)
    assert read_split_file(path) == folds
    with pytest.raises(CovsegError, match="5 cross-validation folds, not one split; use it with --folds 5"):
        Split.load(path)
    with pytest.raises(CovsegError, match="fold 5 does not exist"):
        folds.split(5)
    with pytest.raises(CovsegError, match="--folds 7: only 6 slice"):
        make_folds(IDS[:6], 7)
    with pytest.raises(CovsegError, match="is both a test slice and in a fold"):
        make_folds(IDS[:6], 2, test_ids=[IDS[0]])
    record = json.loads(path.read_text())
    record["folds"][1].append(record["folds"][0][0])
    path.write_text(json.dumps(record))
    with pytest.raises(CovsegError, match="in both fold 0 and fold 1"):
        read_split_file(path)


def test_folds_describe_their_sizes_in_words():
    assert Folds([["a"] * 5, ["b"] * 5], seed=0).describe() == "2 folds of 5 slices each"
    assert Folds([["a"] * 5, ["b"] * 6], seed=0).describe() == "2 folds of 5 and 6 slices"
    assert Folds([["a"] * 6, ["b"] * 5, ["c"] * 8], seed=0).describe() == "3 folds of 5, 6 and 8 slices"
