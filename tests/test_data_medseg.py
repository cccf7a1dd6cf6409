"""The medseg reader on NIfTI volumes written like the original MedSeg files, and the orientation rule."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from covseg.core.errors import CovsegError
from covseg.data.loading import load_slices, resolve_dataset
from covseg.data.nifti import read_label_volume, read_volume, write_label_volume

SLICES, HEIGHT, WIDTH = 5, 40, 48  # not square, so a missing or extra transpose shows


def _display_volumes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(Z, H, W) HU images and labels as a radiologist sees them; a lesion marks the top-left corner."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(-1024, 1500, (SLICES, HEIGHT, WIDTH))
    labels = rng.integers(0, 4, (SLICES, HEIGHT, WIDTH)).astype(np.float64)
    labels[:, :5, :10] = 3  # anterior, patient's right: rows 0-4, columns 0-9 of the display
    return images, labels


def _original_layout(display: np.ndarray, dtype) -> nib.Nifti1Image:
    """Like MedSeg's files: raw[:, :, z] = display[z].T, float64, no orientation (qform_code and
    sform_code 0, so nibabel reports its default LAS affine), 1 mm voxels, slope NaN."""
    raw = np.ascontiguousarray(display.transpose(2, 1, 0)).astype(dtype)
    image = nib.Nifti1Image(raw, None)
    image.header.set_data_dtype(dtype)
    image.header.set_zooms((1.0, 1.0, 1.0))
    image.header["scl_slope"] = np.nan
    return image


@pytest.fixture
def medseg_folder(tmp_path) -> Path:
    images, labels = _display_volumes()
    nib.save(_original_layout(images, np.float64), tmp_path / "tr_im.nii.gz")
    nib.save(_original_layout(labels, np.float64), tmp_path / "tr_mask.nii.gz")
    return tmp_path


def test_written_files_have_the_original_header_facts(medseg_folder):
    mask = nib.load(medseg_folder / "tr_mask.nii.gz")
    assert mask.shape == (WIDTH, HEIGHT, SLICES) and mask.get_data_dtype() == np.float64
    assert nib.aff2axcodes(mask.affine) == ("L", "A", "S")  # nibabel's default for a header without one
    assert (int(mask.header["qform_code"]), int(mask.header["sform_code"])) == (0, 0)
    assert mask.header.get_zooms() == (1.0, 1.0, 1.0) and mask.header.get_slope_inter() == (None, None)


def test_reads_slices_in_display_orientation(medseg_folder):
    images, labels = _display_volumes()
    assert resolve_dataset(None, medseg_folder) == "medseg"
    slices = load_slices(None, medseg_folder)
    assert slices.ids == [f"medseg_{z:03d}" for z in range(1, SLICES + 1)]
    assert slices.intensity == "hu" and slices.spacing == [(1.0, 1.0)] * SLICES
    raw = np.asanyarray(nib.load(medseg_folder / "tr_mask.nii.gz").dataobj)
    for z in range(SLICES):
        assert slices.images[z].shape == (HEIGHT, WIDTH) and slices.images[z].dtype == np.float32
        assert np.allclose(slices.images[z], images[z].astype(np.float32))
        assert slices.masks[z].dtype == np.uint8
        assert np.array_equal(slices.masks[z], labels[z])
        assert np.array_equal(slices.masks[z], raw[:, :, z].T)  # the rule: display = raw[:, :, z].T
        assert (slices.masks[z][:5, :10] == 3).all()  # the marked corner is top-left
    assert slices.lung_masks is None


def test_label_volume_round_trip_keeps_the_reference_header(medseg_folder, tmp_path):
    labels, reference = read_label_volume(medseg_folder / "tr_mask.nii.gz")
    predicted = np.roll(labels, 1, axis=2)
    out = tmp_path / "out" / "prediction.nii.gz"
    write_label_volume(predicted, reference, out)
    written = nib.load(out)
    assert written.get_data_dtype() == np.uint8 and np.allclose(written.affine, reference.affine)
    assert written.shape == reference.shape
    assert np.array_equal(np.asanyarray(written.dataobj), predicted.transpose(2, 1, 0))
    again, _ = read_label_volume(out)
    assert np.array_equal(again, predicted)
    assert [path.name for path in out.parent.iterdir()] == ["prediction.nii.gz"]  # no temporary left
    with pytest.raises(CovsegError, match="does not match the reference volume"):
        write_label_volume(predicted[:, :, :-1], reference, tmp_path / "bad.nii.gz")


def test_lung_masks_and_unlabelled_volumes(medseg_folder):
    images, labels = _display_volumes()
    nib.save(_original_layout((labels > 1).astype(np.float64), np.float64),
             medseg_folder / "tr_lungmasks_updated.nii.gz")
    nib.save(_original_layout(images[:2], np.float64), medseg_folder / "val_im.nii.gz")
    slices = load_slices("medseg", medseg_folder)
    assert np.array_equal(slices.lung_masks[2], labels[2] > 1)
    unlabelled = load_slices("medseg", medseg_folder, {"images": "val_im.nii.gz", "masks": "none",
                                                       "lung_masks": "none"})
    assert unlabelled.ids == ["val_im_001", "val_im_002"] and unlabelled.masks is None
    assert np.allclose(unlabelled.images[1], images[1])
    single = load_slices(None, medseg_folder / "tr_im.nii.gz")  # the image file itself
    assert len(single) == SLICES and np.array_equal(single.masks[0], labels[0])


def test_read_volume_returns_float32_display_order(medseg_folder):
    volume, image = read_volume(medseg_folder / "tr_im.nii.gz")
    assert volume.shape == (SLICES, HEIGHT, WIDTH) and volume.dtype == np.float32
    assert image.shape == (WIDTH, HEIGHT, SLICES)


def _with_orientation(image: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same display volume stored in ``codes`` with a real orientation (sform code 1)."""
    lps = nib.Nifti1Image(np.asarray(image.dataobj), np.diag([-1.0, -1.0, 1.0, 1.0]))
    transform = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("LPS"),
                                                nib.orientations.axcodes2ornt(codes))
    stored = lps.as_reoriented(transform)
    stored.set_sform(stored.affine, code=1)
    return stored


def test_volumes_with_a_real_orientation_give_the_same_slices(tmp_path, medseg_folder):
    """Training data stored RAS (a header that says so) reaches the model as MedSeg's slices do."""
    images, labels = _display_volumes()
    nib.save(_with_orientation(_original_layout(images, np.float64), "RAS"), tmp_path / "tr_im.nii.gz")
    nib.save(_with_orientation(_original_layout(labels, np.float64), "RAS"), tmp_path / "tr_mask.nii.gz")
    coded, uncoded = load_slices("medseg", tmp_path), load_slices("medseg", medseg_folder)
    assert np.array_equal(np.asarray(nib.load(tmp_path / "tr_mask.nii.gz").dataobj)[:, :, 0],
                          labels[0].T[::-1, ::-1])  # stored mirrored in both axes ...
    for z in range(SLICES):  # ... and shown the same
        assert np.array_equal(coded.masks[z], uncoded.masks[z])
        assert np.allclose(coded.images[z], uncoded.images[z])


def test_a_mask_whose_header_disagrees_with_the_image_about_having_an_orientation_is_refused(medseg_folder):
    _, labels = _display_volumes()
    nib.save(_with_orientation(_original_layout(labels, np.float64), "LPS"), medseg_folder / "tr_mask.nii.gz")
    with pytest.raises(CovsegError) as error:
        load_slices("medseg", medseg_folder)
    assert str(error.value) == (
        f"{medseg_folder / 'tr_mask.nii.gz'} has orientation LPS but {medseg_folder / 'tr_im.nii.gz'} has no "
        "orientation (qform_code and sform_code 0): covseg cannot tell whether their voxels line up; give "
        "both the same header")
