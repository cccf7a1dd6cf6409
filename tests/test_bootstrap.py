"""Per-slice confusions and the percentile bootstrap over slices (no training; synthetic counts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from covseg.core.errors import CovsegError
from covseg.evaluation import bootstrap
from covseg.evaluation.bootstrap import bootstrap_intervals, overlap
from covseg.evaluation.confusion import confusion_matrix, slice_confusion_matrices
from covseg.evaluation.evaluate import SliceConfusions
from covseg.evaluation.metrics import compute_metrics
from covseg.evaluation.scores import Score, read_slice_confusions, write_slice_confusions


def slice_confusions(count: int, seed: int = 0, size: int = 24) -> np.ndarray:
    """(count, 4, 4) confusions of random masks predicted right on ~70% of pixels, per slice."""
    generator = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, 4, (count, size, size), generator=generator)
    guess = torch.randint(0, 4, (count, size, size), generator=generator)
    keep = torch.rand((count, size, size), generator=generator) < 0.7
    return slice_confusion_matrices(torch.where(keep, truth, guess), truth, 4).numpy()


def test_slice_confusions_sum_to_the_set_confusion_and_refuse_bad_labels():
    generator = torch.Generator().manual_seed(1)
    truth = torch.randint(0, 4, (5, 9, 7), generator=generator)
    prediction = torch.randint(0, 4, (5, 9, 7), generator=generator)
    per_slice = slice_confusion_matrices(prediction, truth, 4)
    assert per_slice.shape == (5, 4, 4) and per_slice.dtype == torch.int64
    assert torch.equal(per_slice.sum(0), confusion_matrix(prediction, truth, 4))
    for index in range(5):
        assert torch.equal(per_slice[index], confusion_matrix(prediction[index], truth[index], 4))
    truth[2, 0, 0] = 7
    with pytest.raises(CovsegError, match=r"1 pixel\(s\) hold labels outside 0..3"):
        slice_confusion_matrices(prediction, truth, 4)


def test_shards_fill_their_own_slices():
    """Process r of W sees slices r, r + W, ...: each collector fills those rows and no other."""
    truth = torch.randint(0, 4, (5, 6, 6), generator=torch.Generator().manual_seed(2))
    expected = slice_confusion_matrices(truth, truth, 4)
    collected = np.zeros((5, 4, 4), dtype=np.int64)
    for rank in (0, 1):
        collector = SliceConfusions(5, 4, torch.device("cpu"), rank=rank, world_size=2)
        shard = truth[rank::2]
        collector.add(None, shard[:1], shard[:1])  # two batches, as a loader gives them
        collector.add(None, shard[1:], shard[1:])
        rows = collector.gather()
        assert not rows[[index for index in range(5) if index % 2 != rank]].any()
        collected += rows
    np.testing.assert_array_equal(collected, expected.numpy())


def test_interval_contains_the_estimate_is_seeded_and_narrows_with_more_slices():
    many = slice_confusions(80)
    point = compute_metrics(many.sum(0))
    intervals = bootstrap_intervals(many)
    assert set(intervals) == set(point)
    for name, (low, high) in intervals.items():
        assert low <= point[name] <= high, name
    assert bootstrap_intervals(many) == intervals  # seeded: the same numbers twice
    assert bootstrap_intervals(many, seed=1) != intervals
    few = bootstrap_intervals(many[:8])
    for name in ("miou", "pixel_accuracy", "iou/effusion", "dice/ground-glass"):
        assert few[name][1] - few[name][0] > intervals[name][1] - intervals[name][0], name
    narrow = bootstrap_intervals(many, confidence=0.5)
    assert narrow["miou"][1] - narrow["miou"][0] < intervals["miou"][1] - intervals["miou"][0]


def test_a_resample_is_scored_on_its_summed_confusion():
    """One resample by hand: draw as the bootstrap draws, sum the drawn slices, run the metrics."""
    confusions = slice_confusions(12)
    draw = np.random.default_rng(5).integers(0, 12, 12)
    by_hand = compute_metrics(confusions[draw].sum(0))
    (low, high) = bootstrap_intervals(confusions, resamples=1, seed=5)["miou"]
    assert low == pytest.approx(by_hand["miou"], abs=1e-15) and high == pytest.approx(low, abs=1e-15)


def test_one_seed_stacked_is_the_run_interval_and_seeds_average():
    first, second = slice_confusions(10, seed=0), slice_confusions(10, seed=3)
    assert bootstrap_intervals(first[None]) == bootstrap_intervals(first)
    joint = bootstrap_intervals(np.stack([first, second]), resamples=1, seed=4)
    alone = [bootstrap_intervals(item, resamples=1, seed=4)["miou"][0] for item in (first, second)]
    assert joint["miou"][0] == pytest.approx(np.mean(alone), abs=1e-15)


def test_a_class_no_resample_defines_has_no_interval_and_overlap_is_symmetric():
    confusions = np.zeros((4, 4, 4), dtype=np.int64)
    confusions[:, 0, 0] = 100
    confusions[:, 1, 1] = 5
    intervals = bootstrap_intervals(confusions, resamples=20)
    assert intervals["iou/effusion"] is None and intervals["iou/background"] == (1.0, 1.0)
    assert overlap((0.1, 0.3), (0.3, 0.5)) and overlap((0.3, 0.5), (0.1, 0.3))
    assert not overlap((0.1, 0.2), (0.25, 0.5)) and overlap(None, (0.0, 1.0))


@pytest.mark.parametrize(("array", "message"), [
    (np.zeros((0, 4, 4), dtype=np.int64), "expected per-slice confusions"),
    (np.zeros((3, 4, 5), dtype=np.int64), "expected per-slice confusions"),
    (np.zeros((3, 4, 4)), "integer pixel counts"),
])
def test_bad_confusions_are_refused(array, message):
    with pytest.raises(CovsegError, match=message):
        bootstrap_intervals(array)


def test_scores_round_trip_through_slice_confusions_json(tmp_path):
    confusions = slice_confusions(6)
    score = Score.of([f"s{index}" for index in range(6)], confusions)
    assert score.metrics == compute_metrics(confusions.sum(0))
    block = score.summary("test", source="here")
    assert block["slices"] == 6 and block["intervals"]["miou"] == list(score.intervals["miou"])
    path = tmp_path / "slice_confusions.json"
    write_slice_confusions(path, ["a", "b", "c", "d"], {"test": score})
    ids, read = read_slice_confusions(path)["test"]
    assert ids == score.ids and read.dtype == np.int64
    np.testing.assert_array_equal(read, confusions)
    assert bootstrap_intervals(read) == score.intervals  # the interval can be recomputed from the file
    assert len(path.read_text().splitlines()) == 1  # compact


@pytest.mark.parametrize(("sets", "message"), [
    ({"test": {"ids": ["a"], "confusions": [[[1.5, 0], [0, 1]]]}}, "integer pixel counts"),
    ({"test": {"ids": ["a", "b"], "confusions": [[[1, 0], [0, 1]]]}}, r"must be 2 non-negative 2x2"),
    ({"test": {"ids": "a", "confusions": []}}, "ids must be a list"),
    ({"test": {"ids": ["a"], "confusions": [[[1, -1], [0, 1]]]}}, "non-negative"),
])
def test_bad_slice_confusion_files_name_the_file(tmp_path, sets, message):
    path = tmp_path / "slice_confusions.json"
    record = {"format": "covseg-slice-confusions-1", "class_names": ["x", "y"], "sets": sets}
    path.write_text(json.dumps(record))
    with pytest.raises(CovsegError, match=message) as error:
        read_slice_confusions(path)
    assert str(path) in str(error.value)


def test_settings_name_the_method_and_its_source():
    settings = bootstrap.settings()
    assert settings["resamples"] == 1000 and settings["confidence"] == 0.95
    assert "Efron & Tibshirani 1993" in settings["source"]


def _better(confusions: np.ndarray, share: float) -> np.ndarray:
    """The same slices with ``share`` of each class's wrong pixels moved onto the diagonal."""
    better = confusions.copy()
    for index in range(better.shape[0]):
        for truth in range(better.shape[1]):
            wrong = [column for column in range(better.shape[2]) if column != truth]
            moved = np.rint(better[index, truth, wrong] * share).astype(np.int64)
            better[index, truth, wrong] -= moved
            better[index, truth, truth] += moved.sum()
    return better


def test_paired_difference_of_a_model_with_itself_is_exactly_zero():
    seeds = np.stack([slice_confusions(16, seed) for seed in range(3)])
    difference, interval = bootstrap.paired_difference(seeds, seeds, resamples=200)
    assert difference == 0.0 and interval == (0.0, 0.0)


def test_paired_difference_finds_a_small_gain_that_separate_intervals_call_overlapping():
    worse = slice_confusions(16, seed=4, size=64)
    better = _better(worse, 0.03)  # every slice a little better: same slices, same difficulty
    difference, (low, high) = bootstrap.paired_difference(better, worse, resamples=300)
    # The point estimate is the plain difference of the two mIoUs on all slices.
    expected = (compute_metrics(better.sum(0))["miou"] - compute_metrics(worse.sum(0))["miou"])
    assert difference == pytest.approx(expected) and difference > 0
    assert 0 < low <= difference <= high
    # Scored apart, their intervals overlap: the comparison a paired bootstrap makes sharper.
    assert overlap(bootstrap_intervals(better, resamples=300)["miou"],
                   bootstrap_intervals(worse, resamples=300)["miou"])


def test_paired_difference_refuses_different_slices_and_unknown_metrics():
    with pytest.raises(CovsegError, match=r"same slices and classes, got \(N, C, C\) \(16, 4, 4\) and \(15"):
        bootstrap.paired_difference(slice_confusions(16), slice_confusions(15), resamples=5)
    with pytest.raises(CovsegError, match="unknown metric 'mIoU'"):
        bootstrap.paired_difference(slice_confusions(4), slice_confusions(4), metric="mIoU", resamples=5)
