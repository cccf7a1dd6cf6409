"""Array transforms that training and prediction share, so that both resize exactly alike.

NumPy and OpenCV only (no torch): :class:`covseg.data.dataset.SliceDataset` resizes training and
validation slices with :func:`resize_pair`, ``covseg predict`` resizes its slices with
:func:`resize_image` and its labels back with :func:`resize_labels`. Images are interpolated by
area when they shrink along both axes (it averages the pixels it drops; OpenCV's recommendation
for decimation) and linearly otherwise; labels always by nearest neighbour, so they stay labels.
"""

from __future__ import annotations

import cv2
import numpy as np


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image (H, W, C) float32 resized to ``size`` = (height, width), keeping its channel axis.

    Area interpolation when both sides shrink, linear otherwise; returned as it is when the size
    already matches.
    """
    height, width = image.shape[:2]
    target_height, target_width = size
    if (height, width) == (target_height, target_width):
        return image
    shrinking = target_height < height and target_width < width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(image, (target_width, target_height), interpolation=interpolation)
    if resized.ndim == 2 and image.ndim == 3:  # cv2 drops a single channel axis
        resized = resized[:, :, None]
    return resized


def resize_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map (H, W) uint8 resized to ``size`` = (height, width) by nearest neighbour."""
    if labels.shape[:2] == tuple(size):
        return labels
    height, width = size
    return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)


def resize_pair(image: np.ndarray, mask: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, C) and mask (H, W) at side x side (:func:`resize_image`, :func:`resize_labels`)."""
    return resize_image(image, (side, side)), resize_labels(mask, (side, side))
