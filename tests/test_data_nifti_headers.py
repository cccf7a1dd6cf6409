"""NIfTI headers: numbers checked before they size anything, voxel sizes in mm, label maps written right."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from covseg.core.errors import CovsegError
from covseg.data.interpret import IntensityChoice
from covseg.data.loading import load_slices
from covseg.data.nifti import read_ct_volume, read_label_volume, voxel_size_mm, write_label_volume
from covseg.data.slice_files import read_image, read_mask
from covseg.inference.inputs import Case, read_case


def _hu_volume(shape=(12, 10, 3)) -> np.ndarray:
    hu = np.full(shape, -850.0, np.float32)
    hu[:3] = -1000.0
    hu[-3:] = 40.0
    return hu


def _save(path: Path, data: np.ndarray, zooms=(0.8, 0.7, 2.5), **header) -> Path:
    image = nib.Nifti1Image(data, np.diag([*zooms, 1.0]))
    image.header.set_zooms(zooms[: data.ndim])
    for key, value in header.items():
        image.header[key] = value
    nib.save(image, path)
    return path


def _refused(call, *args) -> str:
    with pytest.raises(CovsegError) as error:
        call(*args)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_header_dimensions_that_do_not_fit_the_file_are_refused_before_reading(tmp_path):
    plain = _save(tmp_path / "plain.nii", _hu_volume())
    data = bytearray(plain.read_bytes())
    header = nib.Nifti1Header.from_fileobj(plain.open("rb"))
    header["dim"][1:4] = (1000, 1000, 1000)  # 10^9 voxels claimed in a 1.8 kB file
    data[: header.sizeof_hdr] = header.binaryblock
    (tmp_path / "huge.nii").write_bytes(bytes(data))
    assert _refused(read_ct_volume, tmp_path / "huge.nii", IntensityChoice()) == (
        f"{tmp_path / 'huge.nii'}: header dimensions (1000, 1000, 1000) of float32 need 4,000,000,000 bytes "
        "after byte 352, but the file has 1,792; truncated or wrong header")
    (tmp_path / "huge.nii.gz").write_bytes(gzip.compress(bytes(data)))
    assert "more than a gzip file of" in _refused(read_ct_volume, tmp_path / "huge.nii.gz", IntensityChoice())
    header["dim"][1:4] = (32767, 32767, 32767)
    data[: header.sizeof_hdr] = header.binaryblock
    (tmp_path / "absurd.nii.gz").write_bytes(gzip.compress(bytes(data)))
    assert "more than the 2,147,483,648 covseg reads from one file" in _refused(
        read_ct_volume, tmp_path / "absurd.nii.gz", IntensityChoice())
    (tmp_path / "cut.nii").write_bytes(plain.read_bytes()[:-100])
    cut = _refused(read_ct_volume, tmp_path / "cut.nii", IntensityChoice())
    assert "but the file has 1,692; truncated" in cut


@pytest.mark.parametrize("zooms", [(0.8, 0.0, 2.5), (0.8, 0.7, np.nan), (0.8, 0.7, np.inf), (-0.8, 0.7, 2.5),
                                   (0.8, 0.7, 1e-9)])
def test_voxel_sizes_that_would_make_volumes_wrong_are_refused(tmp_path, zooms):
    path = _save(tmp_path / "scan.nii.gz", _hu_volume())
    image = nib.load(path)
    image.header["pixdim"][1:4] = zooms
    nib.save(image, path)
    message = _refused(read_case, Case("scan", path, "volume"))
    assert message.startswith(f"{path}: header voxel size (pixdim) ")
    assert message.endswith(
        "is not a size between 0.001 and 1000 mm; volumes in ml would be wrong, fix the header")
    (tmp_path / "tr_mask.nii.gz").write_bytes(b"")  # never reached: the image is refused first
    assert _refused(load_slices, "medseg", path) == message


def test_voxel_size_units_from_the_header(tmp_path):
    path = _save(tmp_path / "metres.nii.gz", _hu_volume(), zooms=(0.0008, 0.0007, 0.0025))
    image = nib.load(path)
    image.header.set_xyzt_units("meter")
    nib.save(image, path)
    assert voxel_size_mm(nib.load(path), path) == pytest.approx((0.8, 0.7, 2.5))
    data = read_case(Case("metres", path, "volume"))
    assert data.voxel_ml == pytest.approx(0.8 * 0.7 * 2.5 / 1000)


def test_one_uint8_nifti_is_read_alike_by_data_info_training_and_predict(tmp_path):
    """nibabel's set_data_dtype(np.uint8) packs HU into uint8 + scl_slope/scl_inter: HU everywhere."""
    hu = _hu_volume()
    packed = nib.Nifti1Image(hu.astype(np.float64), np.diag([0.8, 0.7, 2.5, 1.0]))
    packed.set_data_dtype(np.uint8)
    nib.save(packed, tmp_path / "tr_im.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros(hu.shape), np.eye(4)), tmp_path / "tr_mask.nii.gz")
    assert nib.load(tmp_path / "tr_im.nii.gz").get_data_dtype() == np.uint8
    slices = load_slices(None, tmp_path)
    case = read_case(Case("tr_im", tmp_path / "tr_im.nii.gz", "volume"))
    assert slices.intensity == case.intensity == "hu"
    np.testing.assert_allclose(np.stack(slices.images), case.slices)
    shown = hu[::-1, ::-1].transpose(2, 1, 0)  # stored RAS (aligned sform), shown as LPS
    np.testing.assert_allclose(case.slices, shown, atol=3.0)  # uint8 quantisation
    assert slices.notes == [case.assumed]
    assert "uint8 NIfTI scaled by its header" in case.assumed
    # Unscaled uint8 voxels are 8-bit grey levels for both.
    nib.save(nib.Nifti1Image(np.full(hu.shape, 100, np.uint8), np.eye(4)), tmp_path / "tr_im.nii.gz")
    assert load_slices(None, tmp_path).intensity == read_case(
        Case("tr_im", tmp_path / "tr_im.nii.gz", "volume")).intensity == "uint8"


def test_two_d_nifti_slices_go_through_the_same_decision(tmp_path):
    stored = (_hu_volume()[:, :, 0] + 1024).astype(np.uint16)
    nib.save(nib.Nifti1Image(stored, np.eye(4)), tmp_path / "slice.nii.gz")
    assert "look like HU + 1024" in _refused(read_image, tmp_path / "slice.nii.gz", IntensityChoice())
    decided = read_image(tmp_path / "slice.nii.gz", IntensityChoice(hu_offset=-1024))
    np.testing.assert_array_equal(decided.values, _hu_volume()[:, :, 0].T)


def test_label_volume_is_a_label_map_with_the_input_geometry(tmp_path):
    affine = np.array([[-0.8, 0, 0, 100.0], [0, 0.7, 0, -50.0], [0, 0, 2.5, 12.5], [0, 0, 0, 1]])
    ct = nib.Nifti1Image((_hu_volume() + 1024).astype(np.int16), affine)
    qform = affine.copy()
    qform[0, 3] = 99.0  # a qform that differs from the sform: both must survive as they are
    ct.set_qform(qform, code=1)
    ct.set_sform(affine, code=4)
    ct.header.set_slope_inter(1.0, -1024.0)
    ct.header.set_xyzt_units("mm", "sec")
    ct.header["cal_min"], ct.header["cal_max"] = -1000.0, 400.0
    ct.header["descrip"] = b"CT chest, lung kernel"
    ct.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"a comment about the CT"))
    nib.save(ct, tmp_path / "ct.nii.gz")
    reference = nib.load(tmp_path / "ct.nii.gz")
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[:, 2:5, 3:7] = 2
    write_label_volume(labels, reference, tmp_path / "labels.nii.gz")
    written = nib.load(tmp_path / "labels.nii.gz")
    header = written.header
    assert written.get_data_dtype() == np.uint8 and written.dataobj.slope == 1 and written.dataobj.inter == 0
    # stored LAS (sform code 4): shown as LPS, so the rows come back flipped into the stored layout
    np.testing.assert_array_equal(np.asarray(written.dataobj), labels.transpose(2, 1, 0)[:, ::-1])
    np.testing.assert_array_equal(read_label_volume(tmp_path / "labels.nii.gz")[0], labels)
    assert header.get_intent() == ("label", (), "labels") and int(header["intent_code"]) == 1002
    assert (float(header["cal_min"]), float(header["cal_max"])) == (0.0, 3.0)
    assert header["descrip"].tobytes().rstrip(b"\0") == (
        b"covseg labels: 0 background, 1 ground-glass, 2 consolidation, 3 effusion")
    assert len(header.extensions) == 0 and header["aux_file"].tobytes().rstrip(b"\0") == b""
    for field in ("pixdim", "xyzt_units", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                  "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z"):
        np.testing.assert_array_equal(header[field], reference.header[field], err_msg=field)
    np.testing.assert_array_equal(written.affine, reference.affine)
    np.testing.assert_allclose(written.get_qform(), reference.get_qform())
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 4)
    write_label_volume(labels, reference, tmp_path / "two.nii", class_names=("background", "lesion"))
    assert float(nib.load(tmp_path / "two.nii").header["cal_max"]) == 1.0


def test_label_and_lung_masks_with_nan_are_refused(tmp_path):
    hu = _hu_volume()
    _save(tmp_path / "tr_im.nii.gz", hu)
    mask = np.zeros(hu.shape)
    mask[0, 0, 0] = np.nan
    _save(tmp_path / "tr_mask.nii.gz", mask)
    assert _refused(load_slices, "medseg", tmp_path).endswith(
        "tr_mask.nii.gz: 1 mask values are NaN or infinite; a label mask holds the labels (0 background, "
        "1 ground-glass, 2 consolidation, 3 effusion)")
    _save(tmp_path / "tr_mask.nii.gz", np.zeros(hu.shape))
    _save(tmp_path / "tr_lungmasks_updated.nii.gz", mask)
    assert _refused(load_slices, "medseg", tmp_path).endswith(
        "tr_lungmasks_updated.nii.gz: 1 mask values are NaN or infinite; a mask holds 0 and non-zero")


def _claiming(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height (CRC fixed) while holding the original tiny data."""
    ihdr = bytearray(png[12:29])
    ihdr[4:12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return png[:12] + bytes(ihdr) + zlib.crc32(bytes(ihdr)).to_bytes(4, "big") + png[33:]


def test_pictures_too_large_or_stacked_are_refused_before_decoding(tmp_path):
    Image.new("L", (8, 8)).save(tmp_path / "small.png")
    small = (tmp_path / "small.png").read_bytes()
    (tmp_path / "big.png").write_bytes(_claiming(small, 9000, 8000))  # above covseg's limit
    assert _refused(read_image, tmp_path / "big.png", IntensityChoice()) == (
        f"{tmp_path / 'big.png'} is 9000x8000 pixels, more than a slice covseg reads (67,108,864 pixels)")
    (tmp_path / "bomb.png").write_bytes(_claiming(small, 100_000, 100_000))  # a decompression bomb
    assert _refused(read_mask, tmp_path / "bomb.png").startswith(
        f"{tmp_path / 'bomb.png'} is larger than a slice covseg reads (67,108,864 pixels): "
        "DecompressionBombError")
    frames = [Image.fromarray(np.full((8, 8), value, np.uint8)) for value in (0, 50, 100)]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    assert _refused(read_image, tmp_path / "stack.tif", IntensityChoice()).endswith(
        "stack.tif holds 3 frames (a stack or an animation); covseg reads one slice per file")
    np.save(tmp_path / "cut.npy", np.zeros((64, 64), np.float32))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:1000])
    assert _refused(read_image, tmp_path / "cut.npy", IntensityChoice()).endswith(
        "cut.npy is truncated: its header says (64, 64) float32 (16,384 bytes) but 872 bytes follow")
