"""Every bad input gets one line that names the file and what is wrong (no traceback)."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.data.loading import load_slices


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _folder(root: Path, mask: np.ndarray | None = None, shape=(16, 16)) -> Path:
    _png(root / "images" / "a.png", np.zeros(shape, np.uint8))
    _png(root / "masks" / "a.png", np.zeros(shape, np.uint8) if mask is None else mask)
    return root


def _error(dataset: str | None, path: Path, options: dict | None = None) -> str:
    with pytest.raises(CovsegError) as error:
        load_slices(dataset, path, options)
    message = str(error.value)
    assert "\n" not in message
    return message


def _volume(path: Path, shape=(8, 6, 3), value: float = -1000.0) -> Path:
    nib.save(nib.Nifti1Image(np.full(shape, value), np.eye(4)), path)  # -1000: air, valid HU
    return path


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    assert _error(None, missing) == f"data path {missing} does not exist"
    assert _error("folder", missing) == f"{missing} does not exist"


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    assert _error(None, tmp_path) == (f"{tmp_path / 'images'} is empty: put slices (PNG, JPG, TIFF, WebP, "
                                      "NPY or 2-D NIfTI) in it")
    other = tmp_path / "other"
    other.mkdir()
    assert _error(None, other).startswith(f"cannot tell the format of {other}: expected images/ and masks/")


def test_image_without_mask(tmp_path):
    _folder(tmp_path)
    _png(tmp_path / "images" / "b.png", np.zeros((16, 16), np.uint8))
    assert _error("folder", tmp_path) == f"image {tmp_path / 'images' / 'b.png'} has no mask named b.* in " \
                                         f"{tmp_path / 'masks'}"


def test_mask_without_image(tmp_path):
    _folder(tmp_path)
    _png(tmp_path / "masks" / "c.png", np.zeros((16, 16), np.uint8))
    assert _error("folder", tmp_path).startswith(f"mask {tmp_path / 'masks' / 'c.png'} has no image")


def test_shape_mismatch_between_image_and_mask(tmp_path):
    _folder(tmp_path, mask=np.zeros((16, 12), np.uint8))
    assert _error("folder", tmp_path) == (f"{tmp_path / 'images' / 'a.png'} is 16x16 but its mask "
                                          f"{tmp_path / 'masks' / 'a.png'} is 16x12")


def test_shape_mismatch_between_volumes(tmp_path):
    _volume(tmp_path / "tr_im.nii.gz")
    _volume(tmp_path / "tr_mask.nii.gz", shape=(8, 6, 4), value=0.0)
    assert _error("medseg", tmp_path).startswith(f"{tmp_path / 'tr_mask.nii.gz'} has 4 slices of 6x8 but")


def test_truncated_gzip(tmp_path):
    volume = nib.Nifti1Image(np.random.default_rng(0).normal(size=(16, 16, 4)), np.eye(4))
    data = gzip.compress(volume.to_bytes())
    (tmp_path / "tr_im.nii.gz").write_bytes(data[: len(data) * 2 // 3])
    message = _error(None, tmp_path)
    assert message.startswith(
        f"{tmp_path / 'tr_im.nii.gz'} is not a readable NIfTI file: corrupt or truncated gzip")


def test_corrupt_gzip(tmp_path):
    (tmp_path / "tr_im.nii.gz").write_bytes(b"\x1f\x8b\x08\x00garbage that is not deflate data" * 20)
    assert _error("medseg", tmp_path).startswith(f"{tmp_path / 'tr_im.nii.gz'} is not a readable NIfTI file")


def test_not_gzip_at_all(tmp_path):
    (tmp_path / "tr_im.nii.gz").write_text("hello")
    assert _error("medseg", tmp_path).startswith(f"{tmp_path / 'tr_im.nii.gz'} is not a readable NIfTI file")


def test_four_dimensional_nifti(tmp_path):
    _volume(tmp_path / "tr_im.nii.gz", shape=(8, 6, 3, 2))
    assert _error("medseg", tmp_path) == (f"{tmp_path / 'tr_im.nii.gz'} is 4-D with shape (8, 6, 3, 2): "
                                          "expected a 3-D volume (X, Y, slices)")


def test_volume_in_a_folder_dataset(tmp_path):
    (tmp_path / "images").mkdir()
    _volume(tmp_path / "images" / "a.nii.gz")
    assert _error("folder", tmp_path).startswith(f"{tmp_path / 'images' / 'a.nii.gz'} has shape (8, 6, 3): "
                                                 "a folder data set takes 2-D slices")


def test_label_values_outside_the_class_set(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[0, :3] = [1, 7, 9]
    _folder(tmp_path, mask=mask)
    assert _error("folder", tmp_path) == (
        f"{tmp_path / 'masks' / 'a.png'}: label values 7, 9 are outside the "
        "class set (0 background, 1 ground-glass, 2 consolidation, 3 effusion); declare other classes "
        "with --dataset-option labels=background,NAME,...")


def test_fractional_labels_in_a_nifti_mask(tmp_path):
    _volume(tmp_path / "tr_im.nii.gz")
    labels = np.zeros((8, 6, 3))
    labels[0, 0, 0] = 1.5
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "tr_mask.nii.gz")
    assert _error("medseg", tmp_path).startswith(
        f"{tmp_path / 'tr_mask.nii.gz'}: label values 1.5 are outside")


def test_binary_255_masks_say_which_option_to_use(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 255
    _folder(tmp_path, mask=mask)
    assert _error("folder", tmp_path) == (
        f"{tmp_path / 'masks' / 'a.png'}: mask values are 0/255 (a binary mask); map them to labels with "
        "--dataset-option mask_values=0,255 --dataset-option labels=background,NAME "
        "(e.g. background,infection)")
    mask[0, 0] = 128
    _png(tmp_path / "masks" / "a.png", mask)
    assert _error("folder", tmp_path, {"mask_values": "0,255", "labels": "background,infection"}) == (
        f"{tmp_path / 'masks' / 'a.png'}: mask values 128 are not in mask_values=0,255")
    assert _error("folder", tmp_path, {"mask_values": "0,x"}) == (
        "option mask_values=0,x: expected comma-separated numbers, e.g. 0,255")


def test_non_image_files(tmp_path):
    _folder(tmp_path)
    (tmp_path / "images" / "notes.txt").write_text("not a slice")
    assert _error("folder", tmp_path) == (
        f"{tmp_path / 'images' / 'notes.txt'} is not a slice file (PNG, JPG, "
        f"TIFF, WebP, NPY or 2-D NIfTI); remove it from {tmp_path / 'images'}")
    (tmp_path / "images" / "notes.txt").unlink()
    (tmp_path / "images" / "a.png").write_bytes(b"this is no PNG")
    assert _error("folder", tmp_path).startswith(f"{tmp_path / 'images' / 'a.png'} is not a readable image")


def test_colour_mask_and_mixed_intensity_kinds(tmp_path):
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 1
    _folder(tmp_path, mask=colour)
    assert _error("folder", tmp_path) == (
        f"{tmp_path / 'masks' / 'a.png'} is a colour (RGB) mask: masks hold label values in one channel")
    _folder(tmp_path)
    np.save(tmp_path / "images" / "b.npy", np.full((16, 16), -1000.0, np.float32))
    _png(tmp_path / "masks" / "b.png", np.zeros((16, 16), np.uint8))
    assert _error("folder", tmp_path).startswith(
        f"{tmp_path / 'images' / 'b.npy'} holds Hounsfield units from float32 NPY (values reach air/lung, "
        "as chest CT in HU does) but")


def test_medseg_without_masks_and_unknown_options(tmp_path):
    _volume(tmp_path / "tr_im.nii.gz")
    assert _error("medseg", tmp_path).startswith(
        f"{tmp_path / 'tr_mask.nii.gz'} does not exist: MedSeg masks")
    assert _error("medseg", tmp_path, {"mask": "x"}) == (
        "dataset medseg has no option 'mask' (its options: images, masks, lung_masks, intensity, hu_offset, "
        "nan)")
    assert _error("phantom", tmp_path) == (
        f"dataset phantom generates its slices and reads no path; drop --data {tmp_path}")


def test_cli_prints_one_error_line_and_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["data", "info", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: data path {tmp_path / 'nowhere'} does not exist"
    assert "Traceback" not in result.output
    bad = CliRunner().invoke(app, ["data", "info", "phantom", "--dataset-option", "count"])
    assert bad.exit_code == 2 and "--dataset-option 'count' is not key=value" in bad.stderr
