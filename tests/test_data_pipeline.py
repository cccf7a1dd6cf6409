"""Intensity normalisation, augmentation and SliceDataset: alignment, reproducibility, workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.augment import AugmentationConfig
from covseg.data.dataset import SliceDataset, seed_worker
from covseg.data.intensity import Normalisation, to_model_input

THRESHOLDS = (0.4, 0.7)  # labels 1 and 2 = normalised intensity above these


def _smooth_slices(count: int = 4, size: int = 64) -> CTSlices:
    """HU slices of smooth blobs whose mask is a threshold of the normalised image."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    images, masks = [], []
    for index in range(count):
        rng = np.random.default_rng(index)
        field = np.zeros((size, size))
        for _ in range(4):
            cy, cx, width = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
            field += np.exp(-((rows - cy) ** 2 + (cols - cx) ** 2) / (2 * width**2))
        normalised = field / field.max()
        images.append((-1350.0 + 1500.0 * normalised).astype(np.float32))  # lung window: back to [0, 1]
        masks.append(np.digitize(normalised, THRESHOLDS).astype(np.uint8))
    return CTSlices(ids=[f"s{index}" for index in range(count)], images=images, masks=masks,
                    intensity="hu", source="test blobs")


def test_lung_window_uint8_rgb_and_three_windows():
    hu = np.array([[-2000.0, -1350.0, -600.0, 150.0, 900.0]], dtype=np.float32)
    lung = to_model_input(hu, "hu", Normalisation())
    assert lung.shape == (1, 5, 3) and lung.dtype == np.float32
    assert np.allclose(lung[0, :, 0], [0.0, 0.0, 0.5, 1.0, 1.0])
    assert np.array_equal(lung[..., 0], lung[..., 2])
    three = to_model_input(hu, "hu", Normalisation.parse("lung,mediastinal,bone"))
    assert np.allclose(three[0, 2], [0.5, 0.0, 0.0]) and np.allclose(three[0, 3:, 1], [0.775, 1.0])
    assert np.allclose(to_model_input(np.array([[0, 51, 255]], np.uint8), "uint8", Normalisation())[0, :, 1],
                       [0.0, 0.2, 1.0])
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 255
    assert np.array_equal(to_model_input(rgb, "uint8", Normalisation())[0, 0], [0.0, 1.0, 0.0])


def test_normalisation_records_and_errors():
    three = Normalisation.parse("lung, 40:400, bone")
    assert Normalisation.from_dict(three.to_dict()) == three
    assert three.describe().startswith("HU window L-600/W1500 (lung), L40/W400 (mediastinal)")
    assert Normalisation().to_dict() == {"windows": [[-600.0, 1500.0]]}
    with pytest.raises(CovsegError, match="1 or 3 HU windows"):
        Normalisation.parse("lung,bone")
    with pytest.raises(CovsegError, match="window 'soft' is neither a preset"):
        Normalisation.parse("soft")
    with pytest.raises(CovsegError, match="width must be a positive number"):
        Normalisation(((0.0, 0.0),))
    with pytest.raises(CovsegError, match="malformed"):
        Normalisation.from_dict({"levels": []})


def _threshold_agreement(image: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    values = image[0].numpy()
    expected = np.digitize(values, THRESHOLDS)
    wrong = expected != mask.numpy()
    near_threshold = np.min([np.abs(values - level) for level in THRESHOLDS], axis=0) < 0.08
    return 1.0 - wrong.mean(), float((wrong & ~near_threshold).sum())


def test_augmentation_keeps_image_and_mask_aligned():
    slices = _smooth_slices()
    always = AugmentationConfig(rotation_degrees=30, rotation_p=1, hflip_p=1, vflip_p=1, noise_p=0)
    plain = SliceDataset(slices, slices.ids, Normalisation())
    augmented = SliceDataset(slices, slices.ids, Normalisation(), augmentation=always, seed=7)
    for index in range(len(slices)):
        image, mask = augmented[index]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32 and mask.dtype == torch.int64
        original, original_mask = plain[index]
        assert np.array_equal(_threshold_agreement(original, original_mask), (1.0, 0.0))
        # Rotated and flipped (not the original) ...
        assert not torch.allclose(image, original, atol=0.05)
        # ... and still the same threshold: differences only on edges, at interpolated pixels.
        agreement, far_from_edges = _threshold_agreement(image, mask)
        assert agreement > 0.97 and far_from_edges == 0


def test_flips_alone_are_exact_and_noise_lives_in_unit_space():
    slices = _smooth_slices(count=1)
    flips = SliceDataset(slices, slices.ids, Normalisation(),
                         augmentation=AugmentationConfig(rotation_p=0, hflip_p=1, vflip_p=1, noise_p=0))
    image, mask = flips[0]
    original, original_mask = SliceDataset(slices, slices.ids, Normalisation())[0]
    assert torch.equal(image, original.flip(1, 2)) and torch.equal(mask, original_mask.flip(0, 1))
    noisy = SliceDataset(slices, slices.ids, Normalisation(), augmentation=AugmentationConfig(
        rotation_p=0, hflip_p=0, vflip_p=0, noise_std_range=(0.02, 0.02), noise_p=1))
    noisy_image, noisy_mask = noisy[0]
    difference = (noisy_image - original)[0][(original[0] > 0.1) & (original[0] < 0.9)]
    assert 0.017 < float(difference.std()) < 0.023 and torch.equal(noisy_mask, original_mask)
    assert torch.equal(noisy_image[0], noisy_image[2])  # one noise field for all channels
    assert float(noisy_image.min()) >= 0.0 and float(noisy_image.max()) <= 1.0


def test_reproducible_per_seed_and_epoch_and_resized_once():
    slices = _smooth_slices()
    reference = AugmentationConfig.reference()
    first = SliceDataset(slices, slices.ids, Normalisation(), image_size=32, augmentation=reference, seed=1)
    second = SliceDataset(slices, slices.ids, Normalisation(), image_size=32, augmentation=reference, seed=1)
    assert first[0][0].shape == (3, 32, 32) and first.images[0].shape == (32, 32, 1)
    epoch0 = [first[index][0] for index in range(4)]
    assert all(torch.equal(epoch0[index], second[index][0]) for index in range(4))
    first.set_epoch(1)
    assert any(not torch.equal(epoch0[index], first[index][0]) for index in range(4))
    first.set_epoch(0)
    assert torch.equal(first[2][0], epoch0[2])
    assert set(np.unique(first.masks[0])) <= set(np.unique(slices.masks[0]))  # nearest: labels stay labels


def test_same_batches_with_and_without_workers_and_epoch_reaches_persistent_workers():
    slices = _smooth_slices(count=6, size=32)
    dataset = SliceDataset(slices, slices.ids, Normalisation(), augmentation=AugmentationConfig.reference())

    def batches(workers: int, epochs: int) -> list[torch.Tensor]:
        loader = DataLoader(dataset, batch_size=2, num_workers=workers, worker_init_fn=seed_worker,
                            persistent_workers=workers > 0)
        result = []
        for epoch in range(epochs):
            dataset.set_epoch(epoch)
            result += [images for images, _ in loader]
        return result

    in_process = batches(0, 2)
    with_workers = batches(2, 2)
    assert len(in_process) == 6
    assert all(torch.equal(a, b) for a, b in zip(in_process, with_workers, strict=True))
    assert not torch.equal(in_process[0], in_process[3])  # epoch 1 differs from epoch 0


def test_dataset_input_errors():
    slices = _smooth_slices(count=2)
    with pytest.raises(CovsegError, match="1 slice ids are not in test blobs \\(first: 'nope'\\)"):
        SliceDataset(slices, ["s0", "nope"], Normalisation())
    slices.masks = None
    with pytest.raises(CovsegError, match="test blobs has no label masks"):
        SliceDataset(slices, ["s0"], Normalisation())
    with pytest.raises(CovsegError, match="noise_p=2"):
        AugmentationConfig(noise_p=2)
    with pytest.raises(CovsegError, match="augmentation setting 'blur' is unknown"):
        AugmentationConfig.from_dict({"blur": 1})
    record = AugmentationConfig.reference().to_dict()
    assert AugmentationConfig.from_dict(record) == AugmentationConfig.reference()
