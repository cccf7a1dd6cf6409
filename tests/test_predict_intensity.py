"""`covseg predict` and the data sets read one file alike, and never turn odd values into silent ml.

The model is tests/intensity_model.py: a fixed 1x1 convolution whose labels follow the windowed
intensity, so every label volume below is known from the input's HU.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation, to_model_input
from covseg.data.interpret import IntensityChoice
from covseg.data.loading import load_slices
from covseg.inference.inputs import Case, read_case
from tests.intensity_model import write_intensity_model

runner = CliRunner()
ZOOMS = (0.8, 0.8, 5.0)
VOXEL_ML = 0.8 * 0.8 * 5.0 / 1000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_intensity_model(tmp_path_factory.mktemp("model") / "intensity.onnx")


def chest_volume(seed: int = 8, size: int = 64, slices: int = 6) -> np.ndarray:
    """HU (X, Y, Z) raw layout: air, body, two lungs with ground-glass, consolidation and effusion
    blobs, 15 HU noise, clipped to -1000..400 (as /work/shared/cases/nifti_integer_scaling.py)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    volume = []
    for _ in range(slices):
        hu = np.full((size, size), -1000.0)
        hu[((yy - size / 2) / (0.45 * size)) ** 2 + ((xx - size / 2) / (0.48 * size)) ** 2 < 1] = 40.0
        for cx in (0.3 * size, 0.7 * size):
            lung = ((yy - size / 2) / (0.3 * size)) ** 2 + ((xx - cx) / (0.15 * size)) ** 2 < 1
            hu[lung] = -850.0
            for value in (-500.0, -200.0, 10.0):
                cy, cxx, r = rng.uniform(0.35, 0.65) * size, cx + rng.uniform(-3, 3), rng.uniform(2, 5)
                hu[((yy - cy) ** 2 + (xx - cxx) ** 2 < r * r) & lung] = value
        volume.append(np.clip(hu + rng.normal(0, 15, hu.shape), -1000, 400).T)
    return np.stack(volume, -1)


def _nifti(path, data, **scaling):
    image = nib.Nifti1Image(data, np.diag([*ZOOMS, 1.0]))
    image.header.set_zooms(ZOOMS)
    if scaling:
        image.header.set_slope_inter(scaling["slope"], scaling["inter"])
    nib.save(image, path)
    return path


def predict(*arguments):
    result = runner.invoke(app, ["predict", *map(str, arguments), "--device", "cpu", "--overlays", "none"])
    return result


def _labels(out, case):
    return np.asarray(nib.load(out / case / "labels.nii.gz").dataobj)


def _report(out, case):
    return json.loads((out / case / "report.json").read_text())


def _one_line_error(result, text):
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and text in " ".join(result.output.split()), result.output


def test_one_hu_volume_stored_three_ways_gives_one_label_volume(model, tmp_path):
    hu = chest_volume()
    _nifti(tmp_path / "plain_f32.nii.gz", hu.astype(np.float32))
    _nifti(tmp_path / "int16_inter.nii.gz", np.round(hu + 1024).astype(np.int16), slope=1.0, inter=-1024.0)
    packed = nib.Nifti1Image(hu, np.diag([*ZOOMS, 1.0]))
    packed.set_data_dtype(np.uint8)  # nibabel picks scl_slope/scl_inter so the scaled values are HU
    nib.save(packed, tmp_path / "uint8_auto.nii.gz")
    out = tmp_path / "out"
    names = ("plain_f32", "int16_inter", "uint8_auto")
    result = predict(model, *(tmp_path / f"{name}.nii.gz" for name in names), "--out", out)
    assert result.exit_code == 0, result.output
    reference = _labels(out, "plain_f32")
    assert set(np.unique(reference)) == {0, 1, 2, 3}
    written = nib.load(out / "int16_inter" / "labels.nii.gz")  # a label map, not the CT's header
    header = written.header
    assert header.get_intent()[0] == "label" and (written.dataobj.slope, written.dataobj.inter) == (1.0, 0.0)
    assert (float(header["cal_min"]), float(header["cal_max"])) == (0.0, 3.0)
    lesions = _report(out, "plain_f32")["classes"][-1]
    assert lesions["name"] == "all-lesions"
    assert lesions["volume_ml"] == pytest.approx(lesions["voxels"] * VOXEL_ML) and lesions["volume_ml"] > 30
    for name in names[1:]:
        assert (_labels(out, name) != reference).mean() <= 1e-3, name
        other = _report(out, name)["classes"][-1]["volume_ml"]
        assert other == pytest.approx(lesions["volume_ml"], rel=1e-3), name
    assert _report(out, "uint8_auto")["input_intensity"].startswith(
        "Hounsfield units from uint8 NIfTI scaled by its header (slope ")
    assert "uint8_auto: read as Hounsfield units from uint8 NIfTI" in " ".join(result.output.split())


def test_a_float_volume_of_grey_levels_is_refused_or_read_as_8bit(model, tmp_path):
    grey = np.round(np.clip((chest_volume() + 1350) / 1500, 0, 1) * 255)  # a lung-window screenshot
    _nifti(tmp_path / "shot.nii.gz", grey.astype(np.float32))
    _nifti(tmp_path / "shot_u8.nii.gz", grey.astype(np.uint8))
    refused = predict(model, tmp_path / "shot.nii.gz", "--out", tmp_path / "no")
    _one_line_error(refused, "values 60..246 (float32 NIfTI) look like 8-bit grey levels (an exported "
                             "picture), not Hounsfield units (a chest CT holds air at -1000 HU); pass "
                             "--intensity 8bit to divide them by 255")
    assert not (tmp_path / "no").exists()
    for option, out in ((["--intensity", "8bit"], tmp_path / "new"), (["--scale-8bit"], tmp_path / "old")):
        result = predict(model, tmp_path / "shot.nii.gz", "--out", out, *option)
        assert result.exit_code == 0, result.output
    auto = predict(model, tmp_path / "shot_u8.nii.gz", "--out", tmp_path / "u8")  # uint8: 8-bit already
    assert auto.exit_code == 0, auto.output
    eight_bit = _labels(tmp_path / "u8", "shot_u8")
    np.testing.assert_array_equal(_labels(tmp_path / "new", "shot"), eight_bit)
    np.testing.assert_array_equal(_labels(tmp_path / "old", "shot"), eight_bit)
    assert _report(tmp_path / "new", "shot")["input_intensity"] == (
        "8-bit grey levels /255 from float32 NIfTI (--intensity 8bit)")
    both = predict(model, tmp_path / "shot.nii.gz", "--out", tmp_path / "x", "--scale-8bit",
                   "--intensity", "hu")
    _one_line_error(both, "--scale-8bit (the old spelling of --intensity 8bit) and --intensity hu exclude")


def test_nan_voxels_never_become_silent_millilitres(model, tmp_path):
    hu = chest_volume().astype(np.float32)
    yy, xx = np.mgrid[:64, :64]
    outside = (yy - 31.5) ** 2 + (xx - 31.5) ** 2 > 34**2  # outside the reconstruction circle
    with_nan = hu.copy()
    with_nan[outside] = np.nan
    _nifti(tmp_path / "scan.nii.gz", with_nan)
    count = int(outside.sum()) * hu.shape[2]
    refused = predict(model, tmp_path / "scan.nii.gz", "--out", tmp_path / "no")
    _one_line_error(refused, f"scan.nii.gz: {count:,} NaN of {hu.size:,} values (e.g. padding outside the "
                             "reconstruction circle); covseg will not guess what they hold: pass --nan air")
    assert not (tmp_path / "no").exists()
    result = predict(model, tmp_path / "scan.nii.gz", "--out", tmp_path / "air", "--nan", "air")
    assert result.exit_code == 0, result.output
    report = _report(tmp_path / "air", "scan")
    assert report["non_finite_as_air"] == count
    assert report["input_intensity"].endswith(
        f"; {count:,} NaN/infinite values read as air (-1000 HU, --nan air)")
    as_air = hu.copy()
    as_air[outside] = -1000.0
    _nifti(tmp_path / "filled.nii.gz", as_air)
    assert predict(model, tmp_path / "filled.nii.gz", "--out", tmp_path / "filled").exit_code == 0
    np.testing.assert_array_equal(_labels(tmp_path / "air", "scan"), _labels(tmp_path / "filled", "filled"))
    assert report["classes"][-1]["volume_ml"] > 30


def test_nan_never_reaches_training_as_a_nan_loss(tmp_path):
    hu = chest_volume().astype(np.float32)
    hu[:3, :3, :] = np.nan
    _nifti(tmp_path / "tr_im.nii.gz", hu)
    _nifti(tmp_path / "tr_mask.nii.gz", np.zeros(hu.shape))
    with pytest.raises(CovsegError, match=r"tr_im\.nii\.gz: 54 NaN of 24,576 values .* "
                                          r"--dataset-option nan=air"):
        load_slices(None, tmp_path)
    slices = load_slices(None, tmp_path, {"nan": "air"})
    assert slices.notes[-1].endswith(
        "; 54 NaN/infinite values read as air (-1000 HU, --dataset-option nan=air)")
    dataset = SliceDataset(slices, slices.ids, Normalisation(), image_size=32)
    assert all(np.isfinite(dataset[index][0].numpy()).all() for index in range(len(dataset)))
    result = runner.invoke(app, ["data", "info", str(tmp_path), "--dataset-option", "nan=air"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "54 NaN/infinite values read as air" in result.output


def _png16(path, hu):
    Image.fromarray(np.round(hu + 1024).astype(np.uint16)).save(path)
    return path


def test_a_16bit_png_of_hu_plus_1024_is_refused_then_equals_the_hu_original(model, tmp_path):
    hu = np.round(chest_volume()[:, :, 0].T).astype(np.float32)  # one slice, display orientation, whole HU
    hu[0, 0] = -1024.0  # padding: stored 0
    _png16(tmp_path / "slice.png", hu)
    Image.fromarray(hu, mode="F").save(tmp_path / "slice_hu.tif")  # the HU original, float TIFF
    refused = predict(model, tmp_path / "slice.png", "--out", tmp_path / "no")
    _one_line_error(refused, "slice.png: values 0..1111 (uint16 PNG) look like HU + 1024, the usual "
                             "unsigned CT storage (nothing is below 0, but a chest CT holds air at -1000 "
                             "HU); pass --hu-offset -1024")
    with_offset = read_case(Case("slice", tmp_path / "slice.png", "image"),
                            IntensityChoice(hu_offset=-1024, spelling="predict"))
    original = read_case(Case("slice_hu", tmp_path / "slice_hu.tif", "image"))
    assert with_offset.intensity == original.intensity == "hu"
    np.testing.assert_array_equal(to_model_input(with_offset.slices[0], "hu", Normalisation()),
                                  to_model_input(original.slices[0], "hu", Normalisation()))
    for name, options in (("slice", ["--hu-offset", "-1024"]), ("slice_hu", [])):
        suffix = ".png" if name == "slice" else ".tif"
        done = predict(model, tmp_path / f"{name}{suffix}", "--out", tmp_path / name, *options)
        assert done.exit_code == 0, done.output
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "slice" / "slice" / "labels.png")),
                                  np.asarray(Image.open(tmp_path / "slice_hu" / "slice_hu" / "labels.png")))


def test_the_folder_data_set_names_the_dataset_option_and_data_info_says_what_it_assumed(tmp_path):
    hu = chest_volume()
    (tmp_path / "images").mkdir()
    for z in range(2):
        _png16(tmp_path / "images" / f"s{z}.png", hu[:, :, z].T)
    result = runner.invoke(app, ["data", "info", str(tmp_path)], env={"COLUMNS": "250"})
    assert result.exit_code == 2
    assert result.stderr.strip().endswith(
        "look like HU + 1024, the usual unsigned CT storage (nothing is below 0, but a chest CT holds air at "
        "-1000 HU); pass --dataset-option hu_offset=-1024")
    result = runner.invoke(app, ["data", "info", str(tmp_path), "--dataset-option", "hu_offset=-1024"],
                           env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert ("Hounsfield units from uint16 PNG (value - 1024: --dataset-option hu_offset=-1024): 2 files"
            in result.output)
    slices = load_slices(None, tmp_path, {"hu_offset": "-1024"})
    np.testing.assert_allclose(slices.images[1], np.round(hu[:, :, 1].T + 1024) - 1024)
