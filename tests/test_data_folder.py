"""The folder dataset: the 80 real MedSeg slices, and every file format it reads."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from covseg.data.loading import load_slices, resolve_dataset

# The class balance of the 80 real slices, from ../shared/data/medseg100/README.md.
MEDSEG100_PIXELS = {0: 19_497_431, 1: 941_484, 2: 499_072, 3: 33_533}


def test_reads_the_80_real_slices_with_exact_class_counts(medseg100_dir):
    slices = load_slices(None, medseg100_dir)
    assert resolve_dataset(None, medseg100_dir) == "folder"
    assert len(slices) == 80 and slices.intensity == "uint8"
    assert slices.ids[0] == "medseg_001" and slices.ids == sorted(slices.ids)
    assert all(image.shape == (512, 512) and image.dtype == np.uint8 for image in slices.images)
    counts = sum(np.bincount(mask.ravel(), minlength=4) for mask in slices.masks)
    assert dict(enumerate(counts.tolist())) == MEDSEG100_PIXELS


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, array)
    elif path.name.endswith(".nii.gz"):
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array.T), np.eye(4)), path)  # raw = display.T
    else:
        Image.fromarray(array).save(path)


def _labels(seed: int, shape=(24, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 4, shape, dtype=np.uint8)


def test_png_jpg_tiff_rgb_and_palette_slices(tmp_path):
    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    rgb = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    _save(tmp_path / "images" / "a.png", gray)
    _save(tmp_path / "images" / "b.tif", rgb)
    _save(tmp_path / "images" / "c.jpg", np.full((24, 32), 100, np.uint8))
    _save(tmp_path / "images" / "d.png", np.stack([gray] * 3, axis=-1))  # gray stored as RGB
    for name, seed in (("a.png", 1), ("b.npy", 2), ("c.tiff", 3)):
        _save(tmp_path / "masks" / name, _labels(seed))
    palette = Image.fromarray(_labels(4), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 756)
    palette.save(tmp_path / "masks" / "d.png")

    slices = load_slices("folder", tmp_path)
    assert slices.ids == ["a", "b", "c", "d"] and slices.intensity == "uint8"
    assert np.array_equal(slices.images[0], gray)
    assert np.array_equal(slices.images[1], rgb)  # RGB kept as its 3 channels
    assert abs(int(slices.images[2].mean()) - 100) <= 1  # JPEG, lossy
    assert slices.images[3].shape == (24, 32)  # identical channels become grayscale
    for index, seed in enumerate((1, 2, 3, 4)):
        assert np.array_equal(slices.masks[index], _labels(seed))


def test_hounsfield_npy_and_2d_nifti_in_display_orientation(tmp_path):
    hu = np.linspace(-1000, 400, 24 * 32, dtype=np.float32).reshape(24, 32)
    _save(tmp_path / "images" / "s1.npy", hu.astype(np.int16))
    _save(tmp_path / "images" / "s2.nii.gz", hu)
    _save(tmp_path / "masks" / "s1.nii.gz", _labels(1).astype(np.float64))
    _save(tmp_path / "masks" / "s2.npy", _labels(2))
    slices = load_slices(None, tmp_path)
    assert slices.intensity == "hu" and slices.ids == ["s1", "s2"]
    assert np.array_equal(slices.images[0], hu.astype(np.int16)) and np.allclose(slices.images[1], hu)
    assert np.array_equal(slices.masks[0], _labels(1)) and np.array_equal(slices.masks[1], _labels(2))


def test_natural_order_and_unlabelled_folder(tmp_path):
    for name in ("s10", "s2", "s1"):
        _save(tmp_path / "images" / f"{name}.png", np.zeros((8, 8), np.uint8))
    slices = load_slices("folder", tmp_path)
    assert slices.ids == ["s1", "s2", "s10"] and slices.masks is None


def test_binary_masks_mapped_with_mask_values(tmp_path):
    _save(tmp_path / "images" / "x.png", np.zeros((4, 4), np.uint8))
    stored = np.array([[0, 255, 255, 0]] * 4, dtype=np.uint8)
    _save(tmp_path / "masks" / "x.png", stored)
    slices = load_slices("folder", tmp_path, {"mask_values": "0,255", "labels": "background,infection"})
    assert np.array_equal(slices.masks[0], (stored == 255).astype(np.uint8))
    assert slices.labels.names == ("background", "infection")
    four = np.array([[0, 85, 170, 255]] * 4, dtype=np.uint8)
    _save(tmp_path / "masks" / "x.png", four)
    slices = load_slices("folder", tmp_path, {"mask_values": "0,85,170,255"})
    assert slices.masks[0][0].tolist() == [0, 1, 2, 3]
