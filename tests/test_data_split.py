"""The seeded split: deterministic, independent of input order, saved and loaded."""

from __future__ import annotations

import json

import pytest

from covseg.core.errors import CovsegError
from covseg.data.split import Split, make_split

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
])
def test_bad_split_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "split.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(CovsegError, match=message) as error:
        Split.load(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)
