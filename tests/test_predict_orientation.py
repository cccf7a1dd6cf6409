"""`covseg predict` on DICOM series, DICOM SEG output, and one volume stored in many orientations.

The model here is a "position prior": the intensity classifier of :mod:`tests.intensity_model`
plus a constant that forbids ground-glass in the left half of the image it is shown. Shown in
covseg's orientation (LPS: the patient's right on the image's left), it finds the ground-glass
in the patient's left lung only; a mirrored volume would give the patient's right lung's volume
instead, which is made to differ, so every test here fails if a volume reaches the model mirrored.
"""

from __future__ import annotations

import json
from pathlib import Path

import highdicom as hd
import nibabel as nib
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.data.intensity import Normalisation
from covseg.data.orientation import DISPLAY_ORIENTATION
from covseg.onnx import ExportMetadata
from tests.dicom_series import expected_affine, write_series
from tests.import_checks import run_covseg
from tests.intensity_model import CLASS_HU, class_centres

runner = CliRunner()
SIZE = 32  # the model's fixed input size
SLICES, ROWS, COLUMNS = 3, SIZE, SIZE  # display shape, the model's size: no resizing blurs a count
SIZES_MM = (0.8, 0.7, 2.5)  # columns (x), rows (y), slices
VOXEL_ML = 0.8 * 0.7 * 2.5 / 1000


def write_position_model(path: Path, orientation: str = DISPLAY_ORIENTATION) -> Path:
    """The intensity classifier at a fixed SIZE x SIZE input, ground-glass forbidden left of centre."""
    centres = class_centres()
    weight = np.zeros((len(centres), 3, 1, 1), np.float32)
    weight[:, 0, 0, 0] = 2 * centres
    prior = np.broadcast_to(-(centres**2)[None, :, None, None], (1, 4, SIZE, SIZE)).astype(np.float32).copy()
    prior[0, 1, :, : SIZE // 2] -= 100.0  # no ground-glass left of centre ...
    prior[0, 0, :, : SIZE // 2] += 0.15  # ... where it is background, not the next class (consolidation)
    nodes = [helper.make_node("Conv", ["image", "weight"], ["scores"]),
             helper.make_node("Add", ["scores", "prior"], ["logits"])]
    graph = helper.make_graph(
        nodes,
        "position-prior",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, SIZE, SIZE])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(prior, "prior")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    metadata = ExportMetadata("position-prior", 4, 3, CLASS_NAMES, Normalisation(), image_size=SIZE,
                              trained=True, source="tests", orientation=orientation)
    helper.set_model_props(model, metadata.to_props())
    onnx.save(model, path)
    return path


def display_volume() -> tuple[np.ndarray, dict[str, int]]:
    """(Z, H, W) HU in covseg's display orientation and the voxels of each blob.

    Ground-glass in the patient's right lung (image left, small) and left lung (image right,
    large, not symmetric about the diagonal, so a transpose changes its count too), consolidation.
    """
    hu = np.full((SLICES, ROWS, COLUMNS), CLASS_HU[0], np.float32)
    hu[:, 4:12, 2:10] = CLASS_HU[1]  # patient's right: 3 x 8 x 8
    hu[:, 14:30, 19:31] = CLASS_HU[1]  # patient's left: 3 x 16 x 12
    hu[1, 2:6, 12:20] = CLASS_HU[2]  # consolidation, across the centre
    return hu, {"right": 3 * 8 * 8, "left": 3 * 16 * 12, "consolidation": 4 * 8}


def expected_labels(hu: np.ndarray) -> np.ndarray:
    """What the position prior predicts on ``display_volume`` shown the right way round."""
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, :, SIZE // 2:][hu[:, :, SIZE // 2:] == CLASS_HU[1]] = 1
    labels[hu == CLASS_HU[2]] = 2
    return labels


def _predict(*arguments: object):
    return runner.invoke(app, ["predict", *map(str, arguments)])


def _report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _ml(report: dict, name: str) -> float:
    return next(measure["volume_ml"] for measure in report["classes"] if measure["name"] == name)


def _lps_image(hu: np.ndarray) -> nib.Nifti1Image:
    """The display volume stored in LPS (raw = display transposed), 0.8 x 0.7 x 2.5 mm."""
    affine = np.diag([-SIZES_MM[0], -SIZES_MM[1], SIZES_MM[2], 1.0])
    affine[:3, 3] = (40.0, 25.0, -100.0)
    return nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine)


def _stored_in(image: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The same voxels stored in orientation ``codes``, the affine following (nibabel's as_reoriented)."""
    orientations = nib.orientations
    transform = orientations.ornt_transform(orientations.io_orientation(image.affine),
                                            orientations.axcodes2ornt(codes))
    return image.as_reoriented(transform)


def _rotated(image: nib.Nifti1Image, degrees: float) -> nib.Nifti1Image:
    """The same voxels with the affine turned ``degrees`` about the z axis: an oblique volume."""
    angle = np.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return nib.Nifti1Image(np.asarray(image.dataobj), rotation @ image.affine)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_position_model(tmp_path_factory.mktemp("model") / "position.onnx")


def _variants(image: nib.Nifti1Image) -> dict[str, nib.Nifti1Image]:
    """The same voxels stored in other orientations, oblique, and without an orientation."""
    uncoded = nib.Nifti1Image(np.asarray(image.dataobj), None)  # codes 0: shown as stored, raw.T
    uncoded.header.set_zooms(SIZES_MM)
    return {"lps": image, "ras": _stored_in(image, "RAS"), "las": _stored_in(image, "LAS"),
            "pls": _stored_in(image, "PLS"), "oblique": _rotated(image, 20.0), "uncoded": uncoded}


def test_one_volume_in_every_orientation_gives_the_same_lesions_and_labels_that_overlay_it(model, tmp_path):
    hu, voxels = display_volume()
    inputs = _variants(_lps_image(hu))
    truths = _variants(_lps_image(expected_labels(hu)))
    folder = tmp_path / "in"
    folder.mkdir()
    for name, image in inputs.items():
        nib.save(image, folder / f"{name}.nii.gz")
    result = _predict(model, folder, "--out", tmp_path / "out", "--overlays", "none")
    assert result.exit_code == 0, result.output
    assert abs(voxels["right"] - voxels["left"]) > 0.5 * voxels["left"]  # a mirrored volume would show
    for name in inputs:
        report = _report(tmp_path / "out" / name)
        # The patient's left lung only, in every orientation: the volume reached the model unmirrored.
        assert _ml(report, "ground-glass") == pytest.approx(voxels["left"] * VOXEL_ML, rel=0.01), name
        assert _ml(report, "consolidation") == pytest.approx(voxels["consolidation"] * VOXEL_ML, rel=0.01)
        written = nib.load(tmp_path / "out" / name / "labels.nii.gz")
        np.testing.assert_allclose(written.affine, nib.load(folder / f"{name}.nii.gz").affine, atol=1e-5)
        # The labels overlay the input: in its own layout, where its lesion voxels are.
        np.testing.assert_array_equal(np.asarray(written.dataobj), np.asarray(truths[name].dataobj), name)
    assert "no orientation in the header" in _report(tmp_path / "out" / "uncoded")["orientation"]
    assert _report(tmp_path / "out" / "ras")["orientation"] == (
        "stored RAS, shown as LPS (columns patient right to left, rows anterior to posterior); labels "
        "written back in RAS")
    assert "oblique by 20.0 degrees" in _report(tmp_path / "out" / "oblique")["orientation"]
    assert "oblique" not in _report(tmp_path / "out" / "lps")["orientation"]
    assert "ras: stored RAS, shown as LPS" in " ".join(result.output.split())


def test_the_model_orientation_comes_from_its_metadata(tmp_path):
    mirrored = write_position_model(tmp_path / "rps.onnx", orientation="RPS")  # trained mirrored
    hu, voxels = display_volume()
    nib.save(_lps_image(hu), tmp_path / "scan.nii.gz")
    result = _predict(mirrored, tmp_path / "scan.nii.gz", "--out", tmp_path / "out", "--overlays", "none")
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "out" / "scan")
    assert _ml(report, "ground-glass") == pytest.approx(voxels["right"] * VOXEL_ML, rel=0.01)
    assert report["orientation"].startswith("stored LPS, shown as RPS (columns patient left to right")
    labels = np.asarray(nib.load(tmp_path / "out" / "scan" / "labels.nii.gz").dataobj)
    assert (labels == 1).sum() == voxels["right"]


def test_orientation_metadata_round_trip_and_default_for_old_exports():
    metadata = ExportMetadata("m", 4, 3, CLASS_NAMES, Normalisation())
    props = metadata.to_props()
    assert props["covseg.orientation"] == "LPS"
    assert ExportMetadata.from_props(props, "m.onnx").orientation == "LPS"
    old = {key: value for key, value in props.items() if key != "covseg.orientation"}
    assert ExportMetadata.from_props(old, "old.onnx").orientation == "LPS"
    with pytest.raises(CovsegError, match=r"old.onnx has malformed covseg metadata: covseg.orientation: "
                                          r"orientation 'LLS' is not three axis codes"):
        ExportMetadata.from_props({**props, "covseg.orientation": "LLS"}, "old.onnx")


SPACING = (0.7, 0.8)  # PixelSpacing: (rows, columns)
FIRST = (-20.0, -30.0, 100.0)


def test_a_dicom_series_predicts_like_the_same_volume_as_nifti(model, tmp_path):
    hu, voxels = display_volume()  # axial LPS: display slice k is DICOM slice k as stored
    write_series(tmp_path / "dicom", hu, order=[2, 0, 1], names=["z", "a", "m"], pixel_spacing=SPACING,
                 first=FIRST)
    affine = expected_affine((1, 0, 0, 0, 1, 0), SPACING, FIRST, (0.0, 0.0, 2.5))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine), tmp_path / "same.nii.gz")
    result = _predict(model, tmp_path / "dicom", tmp_path / "same.nii.gz", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    from_dicom = nib.load(tmp_path / "out" / "3_Lung_1.0" / "labels.nii.gz")
    from_nifti = nib.load(tmp_path / "out" / "same" / "labels.nii.gz")
    np.testing.assert_allclose(from_dicom.affine, affine, atol=1e-4)  # overlays the series
    np.testing.assert_array_equal(np.asarray(from_dicom.dataobj), np.asarray(from_nifti.dataobj))
    assert (np.asarray(from_dicom.dataobj) == 1).sum() == voxels["left"]
    dicom_report, nifti_report = _report(tmp_path / "out" / "3_Lung_1.0"), _report(tmp_path / "out" / "same")
    for from_series, from_file in zip(dicom_report["classes"], nifti_report["classes"], strict=True):
        assert from_series["voxels"] == from_file["voxels"]
        assert from_series["volume_ml"] == pytest.approx(from_file["volume_ml"], rel=1e-6)  # float32 pixdim
    assert dicom_report["input"] == f"{tmp_path / 'dicom'} (series 3 'Lung 1.0')"
    assert dicom_report["spacing_mm"] == pytest.approx([0.8, 0.7, 2.5])
    assert "Hounsfield units from uint16 DICOM scaled by its header" in dicom_report["input_intensity"]
    assert "3 slices of 32x32, 0.8 x 0.7 x 2.5 mm" in dicom_report["orientation"]


def test_dicom_seg_references_the_series_and_holds_each_lesion_class(model, tmp_path):
    hu, voxels = display_volume()
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # a coronal series: its frames are not the display slices
    stored = np.ascontiguousarray(hu[::-1].transpose(1, 0, 2))  # (P slices, I rows, L columns)
    paths = write_series(tmp_path / "dicom", stored, orientation=coronal, pixel_spacing=SPACING, first=FIRST,
                         thickness=0.7)
    out = tmp_path / "out"
    nifti = _predict(model, tmp_path / "dicom", "--out", out / "nifti", "--overlays", "none")
    seg_run = _predict(model, tmp_path / "dicom", "--out", out / "seg", "--format", "dicom-seg", "--overlays",
                       "none")
    assert nifti.exit_code == 0 and seg_run.exit_code == 0, nifti.output + seg_run.output
    assert not (out / "seg" / "3_Lung_1.0" / "labels.nii.gz").exists()
    seg = hd.seg.segread(out / "seg" / "3_Lung_1.0" / "labels.seg.dcm")
    descriptions = [seg.get_segment_description(number) for number in (1, 2, 3)]
    types = [item.segmented_property_type for item in descriptions]
    assert [item.segment_label for item in descriptions] == ["ground-glass", "consolidation", "effusion"]
    assert [(kind.value, kind.scheme_designator) for kind in types] == [
        ("112120", "DCM"), ("95436008", "SCT"), ("60046008", "SCT")]
    assert {item.segmented_property_category.value for item in descriptions} == {"49755003"}
    sources = [pydicom_uid(path) for path in paths]
    assert {uid for _, _, uid in seg.get_source_image_uids()} == set(sources)
    frames = seg.get_pixels_by_source_instance(source_sop_instance_uids=sources, combine_segments=True,
                                               skip_overlap_checks=True)
    labels = np.asarray(nib.load(out / "nifti" / "3_Lung_1.0" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(frames, labels.transpose(2, 1, 0))  # frame k = slice k's pixels
    assert (frames == 1).sum() == voxels["left"] and (frames == 2).sum() == voxels["consolidation"]
    assert _report(out / "seg" / "3_Lung_1.0")["classes"] == _report(out / "nifti" / "3_Lung_1.0")["classes"]


def pydicom_uid(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_dicom_seg_needs_dicom_input(model, tmp_path):
    hu, _ = display_volume()
    nib.save(_lps_image(hu), tmp_path / "scan.nii.gz")
    result = _predict(model, tmp_path / "scan.nii.gz", "--out", tmp_path / "out", "--format", "dicom-seg")
    assert result.exit_code == 2
    assert " ".join(result.output.split()) == (
        f"error: --format dicom-seg references the source DICOM series, but {tmp_path / 'scan.nii.gz'} is "
        "not one; predict it without --format")
    assert not (tmp_path / "out").exists()


def test_dicom_seg_needs_coded_terms_for_every_class():
    from covseg.inference.dicom_seg import check_dicom_seg

    check_dicom_seg(CLASS_NAMES)
    with pytest.raises(CovsegError) as error:
        check_dicom_seg(("background", "lesion", "effusion"))
    assert str(error.value) == ("--format dicom-seg: no coded terms for class(es) lesion; covseg codes "
                                "ground-glass, consolidation, effusion (use the default NIfTI labels)")


def test_without_the_dicom_extra_one_line_names_it(model, tmp_path):
    hu, _ = display_volume()
    write_series(tmp_path / "dicom", hu)
    run = run_covseg("predict", model, tmp_path / "dicom", "--out", tmp_path / "out", blocked=("pydicom",))
    assert run.returncode == 2
    assert run.stderr == (f"error: {tmp_path / 'dicom'} holds DICOM files; reading them needs pydicom, which "
                          "is not installed: pip install 'covseg[dicom]'")
    run = run_covseg("predict", model, tmp_path / "dicom", "--out", tmp_path / "out", "--format", "dicom-seg",
                     blocked=("highdicom",))
    assert run.returncode == 2
    assert run.stderr == ("error: --format dicom-seg needs highdicom, which is not installed: "
                          "pip install 'covseg[dicom]'")
    assert not (tmp_path / "out").exists()
