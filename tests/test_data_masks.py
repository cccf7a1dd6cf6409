"""Every mask encoding people use is read right or refused with the true reason (covseg.data.slice_files)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from covseg.core.errors import CovsegError
from covseg.data.loading import load_slices
from covseg.data.slice_files import read_mask

SHAPE = (24, 32)


def _labels(seed: int = 0) -> np.ndarray:
    """Labels 0..3 in blocks (as drawn masks are), with every class present."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[4:12, 4:14] = 1
    labels[14:20, 6:16] = 2
    labels[10:22, 20:30] = 3
    labels[2, 2 + seed] = 1
    return labels


def _refused(path: Path, mask_values=None) -> str:
    with pytest.raises(CovsegError) as error:
        read_mask(path, mask_values)
    message = str(error.value)
    assert "\n" not in message and message.startswith(str(path))
    return message


def test_grey_png_palette_png_and_16_bit_png(tmp_path):
    labels = _labels()
    Image.fromarray(labels).save(tmp_path / "grey.png")
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 255, 255, 0, 255, 0, 0, 0, 0, 255] + [0] * 756)  # colours, indices = labels
    palette.save(tmp_path / "palette.png")
    Image.fromarray(labels.astype(np.uint16)).save(tmp_path / "sixteen.png")
    assert Image.open(tmp_path / "sixteen.png").mode.startswith("I;16")
    for name in ("grey.png", "palette.png", "sixteen.png"):
        read = read_mask(tmp_path / name)
        assert read.dtype == np.uint8
        np.testing.assert_array_equal(read, labels, err_msg=name)
    sixteen = labels.astype(np.uint16) * 1000  # 0/1000/2000/3000: not labels
    Image.fromarray(sixteen).save(tmp_path / "sixteen-big.png")
    assert "label values 1000, 2000, 3000 are outside the class set" in _refused(tmp_path / "sixteen-big.png")


def test_one_bit_png_alone_and_with_mask_values_0_255(tmp_path):
    lesion = _labels() > 0
    Image.fromarray(lesion).save(tmp_path / "bits.png")  # a bool array saves as mode "1"
    assert Image.open(tmp_path / "bits.png").mode == "1"
    np.testing.assert_array_equal(read_mask(tmp_path / "bits.png"), lesion.astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "bits.png", (0.0, 255.0)), lesion.astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "bits.png", (0.0, 1.0)), lesion.astype(np.uint8))


def test_one_hot_masks_channel_last_and_channel_first(tmp_path):
    labels = _labels()
    one_hot = np.eye(4, dtype=np.uint8)[labels]  # (H, W, 4)
    np.save(tmp_path / "last.npy", one_hot)
    np.save(tmp_path / "first.npy", one_hot.transpose(2, 0, 1).astype(bool))
    np.save(tmp_path / "float.npy", one_hot.astype(np.float32))
    for name in ("last.npy", "first.npy", "float.npy"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), labels, err_msg=name)
    soft = one_hot.astype(np.float32) * 0.9
    np.save(tmp_path / "soft.npy", soft)
    assert "must be one-hot (0 or 1 per class) but holds 0.9" in _refused(tmp_path / "soft.npy")
    gaps = one_hot.copy()
    gaps[0, :3] = 0
    gaps[1, :2, 1] = 1
    np.save(tmp_path / "gaps.npy", gaps)
    assert _refused(tmp_path / "gaps.npy").endswith(
        "one-hot mask with 3 pixels in no class and 2 in several; each pixel belongs to exactly one class")
    np.save(tmp_path / "three.npy", one_hot[:, :, 1:])
    assert "has 3 channels; masks are (H, W) label values, or one-hot (H, W, 4)" in _refused(
        tmp_path / "three.npy")
    assert "mask_values does not apply" in _refused(tmp_path / "last.npy", (0.0, 255.0))


def test_channel_first_single_channel_npy_and_nifti(tmp_path):
    labels = _labels()
    np.save(tmp_path / "first.npy", labels[None])
    np.save(tmp_path / "last.npy", labels[:, :, None])
    # NIfTI keeps slices as raw[:, :, z] = display.T; a channel-first file is (1, X, Y).
    nib.save(nib.Nifti1Image(labels.T[None].astype(np.float64), np.eye(4)), tmp_path / "first.nii.gz")
    nib.save(nib.Nifti1Image(labels.T[:, :, None].astype(np.int16), np.eye(4)), tmp_path / "last.nii.gz")
    for name in ("first.npy", "last.npy", "first.nii.gz", "last.nii.gz"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), labels, err_msg=name)


def test_lossy_masks_are_refused_with_the_reason(tmp_path):
    labels = _labels()
    Image.fromarray(labels).save(tmp_path / "mask.jpg", quality=90)
    Image.fromarray(labels).save(tmp_path / "looks-like.png", format="JPEG", quality=95)  # content decides
    Image.fromarray(labels).save(tmp_path / "lossy.webp", lossless=False, quality=90)
    Image.fromarray(labels).save(tmp_path / "lossless.webp", lossless=True)
    Image.fromarray(np.stack([labels] * 3, -1)).save(tmp_path / "jpeg.tif", compression="jpeg")
    Image.fromarray(labels).save(tmp_path / "lzw.tif", compression="tiff_lzw")
    reason = ("which is lossy: it changes label values at region edges (a 1 can become 0 or 2), so the mask "
              "no longer holds what was drawn; save masks losslessly (PNG, TIFF, NPY or NIfTI)")
    expected = f"{tmp_path / 'mask.jpg'} is stored with JPEG compression, {reason}"
    assert _refused(tmp_path / "mask.jpg") == expected
    assert "is stored with JPEG compression" in _refused(tmp_path / "looks-like.png")
    assert "is stored with lossy WebP compression" in _refused(tmp_path / "lossy.webp", (0.0, 255.0))
    assert "is stored with JPEG-compressed TIFF compression" in _refused(tmp_path / "jpeg.tif")
    np.testing.assert_array_equal(read_mask(tmp_path / "lossless.webp"), labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "lzw.tif"), labels)


def test_real_medseg_masks_saved_as_jpeg_are_refused_not_miscounted(medseg100_dir, tmp_path):
    """On real slices JPEG moves thousands of label pixels and invents consolidation nobody drew."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    changed = invented = 0
    for path in sorted((medseg100_dir / "images").glob("*.png"))[:10]:
        truth = (np.asarray(Image.open(medseg100_dir / "masks" / path.name)) > 0).astype(np.uint8)
        (tmp_path / "images" / path.name).symlink_to(path)
        Image.fromarray(truth).save(tmp_path / "masks" / (path.stem + ".jpg"), quality=90)
        decoded = np.asarray(Image.open(tmp_path / "masks" / (path.stem + ".jpg")))
        changed += int((decoded != truth).sum())
        invented += int((decoded == 2).sum())
    assert changed > 10_000 and invented > 500  # what a silent reader would have counted
    with pytest.raises(CovsegError, match=r"medseg_001\.jpg is stored with JPEG compression, which is lossy"):
        load_slices("folder", tmp_path)


def test_colour_masks_and_hounsfield_nan_masks_are_refused(tmp_path):
    colour = np.zeros((*SHAPE, 3), np.uint8)
    colour[..., 0] = _labels()
    Image.fromarray(colour).save(tmp_path / "colour.png")
    assert _refused(tmp_path / "colour.png").endswith(
        "is a colour (RGB) mask: masks hold label values in one channel")
    nan = _labels().astype(np.float32)
    nan[0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    assert "1 mask values are NaN or infinite" in _refused(tmp_path / "nan.npy")
