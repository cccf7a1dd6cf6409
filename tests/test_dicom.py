"""DICOM series input: grouping, ordering along the normal, HU, spacing and the affine, refusals.

Each geometry test writes a small series with pydicom and the same volume as NIfTI with the
affine the DICOM standard gives it (:func:`tests.dicom_series.expected_affine`), and checks that
covseg reads both alike: values, display spacing, voxel volume and affine.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLossless, RLELossless

from covseg.core.errors import CovsegError
from covseg.data.dicom import read_series, scan_series
from covseg.data.interpret import IntensityChoice
from covseg.data.nifti import display_spacing, read_ct_volume
from covseg.inference.inputs import Case, discover_cases, read_case
from tests.dicom_series import AXIAL, expected_affine, normal_of, rotated_axial, write_series

SLICES, ROWS, COLUMNS = 5, 12, 10  # not square, so a missing or extra transpose shows
SPACING = (0.7, 0.8)  # PixelSpacing: rows 0.7 mm apart, columns 0.8 mm apart
FIRST = (-20.0, -30.0, 100.0)
THICKNESS = 2.5


def _hu(seed: int = 0) -> np.ndarray:
    """(Z, rows, columns) HU with air (-1000) in every slice, so they read as chest CT."""
    hu = np.random.default_rng(seed).integers(-900, 300, (SLICES, ROWS, COLUMNS)).astype(np.float32)
    hu[:, 0, -1] = -1000
    return hu


def _refused(call, *args, **kwargs) -> str:
    with pytest.raises(CovsegError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def _as_nifti(hu: np.ndarray, affine: np.ndarray, path: Path) -> Path:
    """The same volume as a NIfTI file: raw[i, j, k] = slice k's pixel (row j, column i)."""
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine), path)
    return path


def _only_series(folder: Path):
    (series,) = scan_series(folder)
    return series


def _assert_reads_like_nifti(folder: Path, hu: np.ndarray, affine: np.ndarray, tmp_path: Path):
    volume = read_series(_only_series(folder), IntensityChoice())
    np.testing.assert_allclose(volume.reference.affine, affine, atol=1e-4)
    nifti = _as_nifti(hu, affine, tmp_path / "same.nii.gz")
    decided, image = read_ct_volume(nifti, IntensityChoice())
    np.testing.assert_array_equal(volume.intensities.values, decided.values)
    shown = volume.reoriented.display_sizes(volume.voxel_size_mm)
    assert shown[1:] == pytest.approx(display_spacing(image, nifti))
    assert math.prod(volume.voxel_size_mm) == pytest.approx(abs(np.linalg.det(affine[:3, :3])), rel=1e-5)
    return volume


def test_shuffled_series_is_ordered_along_the_normal_not_by_name_or_instance_number(tmp_path):
    hu = _hu()
    # Slice k goes to file name and InstanceNumber position n: neither follows the anatomy.
    order = [3, 0, 4, 1, 2]
    write_series(tmp_path / "dicom", hu, order=order, names=["b", "e", "a", "d", "c"],
                 pixel_spacing=SPACING, first=FIRST, thickness=THICKNESS)
    affine = expected_affine(AXIAL, SPACING, FIRST, normal_of(AXIAL) * THICKNESS)
    volume = _assert_reads_like_nifti(tmp_path / "dicom", hu, affine, tmp_path)
    # Axial LPS: the display is each slice as stored, inferior to superior, RescaleIntercept applied.
    np.testing.assert_array_equal(volume.intensities.values, hu)
    assert volume.voxel_size_mm == pytest.approx((0.8, 0.7, 2.5))
    assert volume.reoriented.stored == "LPS" and not volume.reoriented.oblique
    assert [int(source.ImagePositionPatient[2]) for source in volume.sources] == [100, 102, 105, 107, 110]
    assert volume.intensities.assumed == ("Hounsfield units from uint16 DICOM scaled by its header (slope 1, "
                                          "intercept -1024) (values reach air/lung, as chest CT in HU does)")
    header = volume.reference.header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 1)


def test_oblique_series_keeps_its_voxels_and_says_how_oblique(tmp_path):
    hu = _hu(1)
    orientation = rotated_axial(20.0)
    write_series(tmp_path / "dicom", hu, orientation=orientation, pixel_spacing=SPACING, first=FIRST)
    affine = expected_affine(orientation, SPACING, FIRST, normal_of(orientation) * THICKNESS)
    volume = _assert_reads_like_nifti(tmp_path / "dicom", hu, affine, tmp_path)
    np.testing.assert_array_equal(volume.intensities.values, hu)  # closest axes: LPS, no resampling
    assert volume.reoriented.obliquity_deg == pytest.approx(20.0, abs=0.01)
    assert "oblique by 20.0 degrees" in volume.reoriented.describe()


def test_coronal_series_is_shown_axial_right_left_and_anterior_up(tmp_path):
    hu = _hu(2)
    hu[0, 0, 0] = 1000.0  # column 0 (patient's right), row 0 (most superior), slice 0 (most anterior)
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # rows run to the left, columns downwards
    write_series(tmp_path / "dicom", hu, orientation=coronal, pixel_spacing=SPACING, first=FIRST)
    affine = expected_affine(coronal, SPACING, FIRST, normal_of(coronal) * THICKNESS)
    volume = _assert_reads_like_nifti(tmp_path / "dicom", hu, affine, tmp_path)
    assert volume.reoriented.stored == "LIP"
    shown = volume.intensities.values
    assert shown.shape == (ROWS, SLICES, COLUMNS)  # slices along S, rows along P, columns along L
    assert shown[-1, 0, 0] == 1000.0  # most superior slice, anterior row, patient's right column
    assert volume.reoriented.display_sizes(volume.voxel_size_mm) == pytest.approx((0.7, 2.5, 0.8))


def test_gantry_tilt_is_kept_exactly_in_the_sform_with_the_volume_of_its_determinant(tmp_path):
    hu = _hu(3)
    step = (0.0, 0.5, THICKNESS)  # each slice 0.5 mm further posterior: the gantry tilted 11.3 degrees
    write_series(tmp_path / "dicom", hu, step=step, pixel_spacing=SPACING, first=FIRST)
    affine = expected_affine(AXIAL, SPACING, FIRST, step)
    volume = _assert_reads_like_nifti(tmp_path / "dicom", hu, affine, tmp_path)
    assert volume.voxel_size_mm == pytest.approx((0.8, 0.7, THICKNESS))  # along the normal, not |step|
    assert volume.tilt_deg == pytest.approx(math.degrees(math.atan(0.5 / THICKNESS)))
    assert "gantry tilt 11.3 degrees" in volume.describe()
    untilted = expected_affine(AXIAL, SPACING, FIRST, (0.0, 0.0, THICKNESS))
    np.testing.assert_allclose(volume.reference.get_qform(), untilted, atol=1e-4)


def test_two_series_need_a_choice_and_are_named_after_number_and_description(tmp_path):
    folder = tmp_path / "study"
    write_series(folder / "a", _hu(4), series_number=3, description="Lung 1.0")
    soft = write_series(folder / "b" / "deeper", _hu(5), series_number=4, description="Soft/Tissue")
    write_series(folder / "c", _hu(6)[:1], series_number=1, description="Scout",
                 image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    write_series(folder / "d", _hu(7)[:2], series_number=5, description="MR", modality="MR")
    message = _refused(discover_cases, [folder])
    assert message.startswith(f"{folder} holds 2 CT series: series 3 'Lung 1.0' (5 CT files, UID ")
    assert "series 4 'Soft/Tissue' (5 CT files" in message and "Scout" not in message
    assert message.endswith("choose with --series NUMBER or --series UID (repeatable), or --series all")
    (case,) = discover_cases([folder], ["4"])
    assert case.kind == "dicom" and case.name == "4_Soft_Tissue" and case.path == folder
    assert set(case.series.files) == set(soft)
    assert [case.name for case in discover_cases([folder], ["all"])] == ["3_Lung_1.0", "4_Soft_Tissue"]
    assert [case.name for case in discover_cases([folder], [case.series.uid])] == ["4_Soft_Tissue"]
    assert _refused(discover_cases, [folder], ["9"]) == (
        "--series 9: no such SeriesInstanceUID or SeriesNumber among the DICOM series of the inputs")
    assert _refused(discover_cases, [folder], ["5"]).endswith(
        "(series 5 'MR') is MR, not CT: covseg segments CT")
    assert "is a localizer (scout projection)" in _refused(discover_cases, [folder], ["1"])
    write_series(tmp_path / "other", _hu(8), series_number=7, description="Other patient")
    assert _refused(discover_cases, [folder, tmp_path / "other"], ["3"]).startswith(
        f"--series 3 chose none of the series in {tmp_path / 'other'}: series 7 'Other patient' (5 CT files")
    shutil.rmtree(folder / "b")
    (only,) = discover_cases([folder])  # one CT series left beside the localizer and the MR
    assert only.name == "3_Lung_1.0"


def test_series_choices_need_dicom_inputs(tmp_path):
    nib.save(nib.Nifti1Image(np.full((4, 4, 2), -1000, np.int16), np.eye(4)), tmp_path / "scan.nii.gz")
    assert _refused(discover_cases, [tmp_path], ["3"]) == (
        "--series 3 chooses DICOM series, but no input folder holds any")
    assert [case.kind for case in discover_cases([tmp_path])] == ["volume"]


def test_non_ct_modalities_are_refused(tmp_path):
    write_series(tmp_path / "mr", _hu(), modality="MR", description="T1")
    assert _refused(discover_cases, [tmp_path / "mr"]).startswith(
        f"{tmp_path / 'mr'} holds no CT series (covseg segments CT): series 3 'T1' (5 MR files")


def test_a_missing_slice_is_refused_as_uneven_spacing(tmp_path):
    paths = write_series(tmp_path / "dicom", np.concatenate([_hu(), _hu(1)]))
    paths[4].unlink()
    message = _refused(read_series, _only_series(tmp_path / "dicom"), IntensityChoice())
    assert message == (f"{tmp_path / 'dicom'} (series 3 'Lung 1.0'): slices are 2.5 mm apart but 5 mm "
                       "between IM0003 and IM0005: missing slices (uneven spacing)")


def test_two_slices_at_one_position_are_refused(tmp_path):
    write_series(tmp_path / "dicom", _hu(), step=(0.0, 0.0, 0.0))
    assert "lie at the same position (100.00 mm along the slice normal)" in _refused(
        read_series, _only_series(tmp_path / "dicom"), IntensityChoice())


def test_values_go_through_the_one_intensity_decision(tmp_path):
    hu = _hu()
    write_series(tmp_path / "dicom", hu, intercept=None)  # HU + 1024 stored, no rescale in the header
    series = _only_series(tmp_path / "dicom")
    message = _refused(read_series, series, IntensityChoice(spelling="predict"))
    assert "(uint16 DICOM) look like HU + 1024" in message and message.endswith("pass --hu-offset -1024")
    offset = read_series(series, IntensityChoice(hu_offset=-1024))
    np.testing.assert_array_equal(offset.intensities.values, hu)


def test_a_compressed_series_with_an_installed_decoder_reads_alike(tmp_path):
    hu = _hu()
    for path in write_series(tmp_path / "dicom", hu):
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)  # pydicom encodes and decodes RLE itself
        dataset.save_as(path)
    volume = read_series(_only_series(tmp_path / "dicom"), IntensityChoice())
    np.testing.assert_array_equal(volume.intensities.values, hu)


def test_a_compression_no_installed_package_decodes_is_refused_naming_the_packages(tmp_path):
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLossless).is_available:
        pytest.skip("a JPEG Lossless decoder (pylibjpeg or gdcm) is installed here")
    frame = b"\xff\xd8\xff\xd9"  # an encapsulated frame: covseg must refuse before decoding it
    paths = write_series(tmp_path / "dicom", _hu(), transfer_syntax=JPEGLossless,
                         pixel_data=pydicom.encaps.encapsulate([frame]))
    message = _refused(read_series, _only_series(tmp_path / "dicom"), IntensityChoice())
    assert message == (
        f"{paths[0]}: pixel data compressed as JPEG Lossless, Non-Hierarchical (Process 14) "
        "(1.2.840.10008.1.2.4.57), which no installed package decodes; install one: pip install "
        "'python-gdcm' or pip install 'pylibjpeg>=2.0' 'pylibjpeg-libjpeg>=2.1'")


def test_one_dicom_file_is_not_a_case(tmp_path):
    paths = write_series(tmp_path / "dicom", _hu())
    assert _refused(discover_cases, [paths[0]]) == (
        f"{paths[0]} is one DICOM file; give the folder that holds its series")


def test_read_case_reads_a_series_and_names_it_in_reports(tmp_path):
    write_series(tmp_path / "dicom", _hu(), description="")
    (case,) = discover_cases([tmp_path / "dicom"])
    assert isinstance(case, Case) and case.name == "3" and case.where == f"{tmp_path / 'dicom'} (series 3)"
    data = read_case(case)
    assert data.voxel_ml == pytest.approx(0.8 * 0.7 * 2.5 / 1000) and data.spacing_mm == pytest.approx(
        (0.8, 0.7, 2.5))
    assert data.orientation.startswith("stored LPS, shown as LPS") and "5 slices of 10x12" in data.orientation
