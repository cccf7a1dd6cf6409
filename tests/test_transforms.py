"""The torch-free resizes that training (SliceDataset) and prediction share."""

from __future__ import annotations

import numpy as np

from covseg.data.transforms import resize_image, resize_labels, resize_pair


def test_shrinking_averages_areas_and_keeps_the_channel_axis():
    image = np.arange(4 * 6, dtype=np.float32).reshape(4, 6, 1)
    small = resize_image(image, (2, 3))
    assert small.shape == (2, 3, 1) and small.dtype == np.float32
    blocks = image[:, :, 0].reshape(2, 2, 3, 2).mean(axis=(1, 3))  # each output pixel: its 2x2 block
    np.testing.assert_allclose(small[:, :, 0], blocks, rtol=1e-6)
    assert resize_image(image, (4, 6)) is image  # the size already matches: untouched


def test_enlarging_is_linear_and_never_leaves_the_input_range():
    image = np.zeros((4, 4, 3), np.float32)
    image[:, 2:] = 1.0
    large = resize_image(image, (8, 12))  # non-square, as a foreign graph with a fixed input asks
    assert large.shape == (8, 12, 3)
    assert large.min() == 0.0 and large.max() == 1.0
    row = large[0, :, 0]
    assert np.all(np.diff(row) >= 0) and 0.0 < row[6] < 1.0  # a ramp across the edge, not a step


def test_labels_resize_by_nearest_neighbour_and_stay_labels():
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    large = resize_labels(labels, (4, 6))
    np.testing.assert_array_equal(large, np.repeat(np.repeat(labels, 2, axis=0), 3, axis=1))
    back = resize_labels(large, (2, 2))
    np.testing.assert_array_equal(back, labels)


def test_resize_pair_is_the_image_and_label_resizes_together():
    rng = np.random.default_rng(0)
    image = rng.random((30, 40, 3), dtype=np.float32)
    mask = rng.integers(0, 4, (30, 40), dtype=np.uint8)
    for side in (16, 64):
        pair = resize_pair(image, mask, side)
        np.testing.assert_array_equal(pair[0], resize_image(image, (side, side)))
        np.testing.assert_array_equal(pair[1], resize_labels(mask, (side, side)))
        assert pair[0].shape == (side, side, 3) and set(np.unique(pair[1])) <= {0, 1, 2, 3}
