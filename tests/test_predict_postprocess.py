"""Lung restriction, small-lesion removal and the severity report, voxel by voxel.

The model is tests/intensity_model.py's intensity classifier, so the predicted labels are the
volume's blobs exactly. Display layout (Z, rows, columns) = (5, 40, 50); voxel 0.8 x 0.7 x 2.5 mm =
0.0014 ml; the affine maps column i to world x = 100 - 0.8 i (RAS+: the patient's right has the
larger x), so columns 2-21 are the right lung and 28-47 the left (rows 2-37, all slices; 3,600
voxels each). The blobs:

- A, ground-glass in the right lung: slices 1-3, rows 5-14, columns 5-14 (300 voxels);
- E, one ground-glass voxel (4, 15, 15) touching A only by a corner (26-connected, not 6 or 18);
- B, a ground-glass speck in the left lung: slice 2, rows 30-31, columns 40-41 (4 voxels);
- F, one ground-glass voxel alone in the right lung: (0, 33, 10);
- C, consolidation: slices 0-1, rows 20-29, columns 18-25 (160 voxels; columns 22-25, 80 voxels,
  between the lungs);
- D, pleural effusion: slices 3-4, rows 36-39, columns 30-39 (80 voxels; rows 38-39, 40 voxels,
  below the lung).
"""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.cli import app
from covseg.inference.postprocess import remove_small_lesions, restrict_to_lung
from covseg.inference.severity import assess_severity, severity_band, split_lungs
from tests.intensity_model import CLASS_HU, write_intensity_model

runner = CliRunner()
SHAPE = (5, 40, 50)
ZOOMS = (0.8, 0.7, 2.5)
VOXEL_ML = 0.8 * 0.7 * 2.5 / 1000
AFFINE = np.array([[-0.8, 0, 0, 100.0], [0, 0.7, 0, -50.0], [0, 0, 2.5, 12.5], [0, 0, 0, 1]])


def blobs() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1:4, 5:15, 5:15] = 1  # A
    labels[4, 15, 15] = 1  # E
    labels[2, 30:32, 40:42] = 1  # B
    labels[0, 33, 10] = 1  # F
    labels[0:2, 20:30, 18:26] = 2  # C
    labels[3:5, 36:40, 30:40] = 3  # D
    return labels


def lungs(values: tuple[int, int] = (1, 2)) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[:, 2:38, 2:22] = values[0]
    mask[:, 2:38, 28:48] = values[1]
    return mask


def save(path, display: np.ndarray, dtype=np.int16, oriented: bool = True) -> None:
    image = nib.Nifti1Image(display.transpose(2, 1, 0).astype(dtype), AFFINE)
    image.header.set_zooms(ZOOMS)
    if not oriented:
        image.header.set_qform(None, code=0)
        image.header.set_sform(None, code=0)
    nib.save(image, path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("postprocess")
    save(folder / "chest.nii.gz", np.asarray(CLASS_HU, np.float32)[blobs()])
    save(folder / "lungs.nii.gz", lungs(), np.uint8)
    return {"model": write_intensity_model(folder / "model.onnx"), "chest": folder / "chest.nii.gz",
            "lungs": folder / "lungs.nii.gz", "folder": folder}


def predict(*arguments: object):
    return runner.invoke(app, ["predict", *map(str, arguments)])


def test_restriction_and_small_lesion_removal_count_every_voxel():
    labels, lung = blobs(), lungs() > 0
    restricted, removed = restrict_to_lung(labels, lung, CLASS_NAMES, VOXEL_ML)
    assert removed.voxels == (0, 80, 0) and removed.kept_classes == ("effusion",)
    assert removed.volume_ml == pytest.approx((0, 80 * VOXEL_ML, 0))
    assert np.count_nonzero(restricted == 3) == 80  # effusion stays, inside the lung or not
    # 0.05 ml / 0.0014 ml = 35.7: lesions under 36 voxels go (B: 4 voxels, F: 1); E stays with A.
    filtered, small = remove_small_lesions(restricted, 0.05, VOXEL_ML, CLASS_NAMES)
    assert small.voxels == (5, 0, 0) and small.components == 2
    assert "36 voxels" in small.setting
    counts = np.bincount(filtered.ravel(), minlength=4)
    assert counts[1:].tolist() == [301, 80, 80]
    assert filtered[4, 15, 15] == 1 and filtered[2, 30, 40] == 0 and filtered[0, 33, 10] == 0
    # A lesion of exactly the threshold stays: 80 voxels = 0.112 ml.
    _, exact = remove_small_lesions(restricted, 80 * VOXEL_ML, VOXEL_ML, CLASS_NAMES)
    assert exact.voxels == (5, 0, 0)
    _, above = remove_small_lesions(restricted, 80.5 * VOXEL_ML, VOXEL_ML, CLASS_NAMES)
    assert above.voxels == (5, 80, 80) and above.components == 4  # B, F, C's rest and D


def test_severity_bands_and_sides():
    assert [severity_band(p) for p in (0, 1e-9, 25, 25.0001, 50, 50.5, 75, 75.01, 100)] == [
        0, 1, 1, 2, 2, 3, 3, 4, 4
    ]
    labels = blobs()
    labelled = assess_severity(labels, lungs(), CLASS_NAMES, VOXEL_ML, AFFINE)
    # Right lung: A 300 + E 1 + F 1 + C inside 80 = 382 of 3,600; left: B 4 (effusion not counted).
    assert labelled.lung("right").lesion_voxels == 382 and labelled.lung("left").lesion_voxels == 4
    assert labelled.lung("right").percent == pytest.approx(100 * 382 / 3600)
    assert (labelled.lung("right").band, labelled.lung("left").band, labelled.score) == (1, 1, 2)
    assert labelled.lung("lungs").lesion_voxels == 386 and labelled.lung("lungs").lung_voxels == 7200
    assert labelled.lung("right").lung_ml == pytest.approx(3600 * VOXEL_ML)
    assert labelled.classes == ("ground-glass", "consolidation")
    assert labelled.sides == "labels: lung mask values 1 and 2"
    # The same sides whatever the values, and from the two components of a binary mask.
    swapped = assess_severity(labels, lungs((7, 3)), CLASS_NAMES, VOXEL_ML, AFFINE)
    assert swapped.lung("right").lesion_voxels == 382
    binary = lungs((1, 1))
    binary[2, 10, 25] = 1  # a stray piece between the lungs, left of the mid-line (world x 80 < 80.4)
    components = assess_severity(labels, binary, CLASS_NAMES, VOXEL_ML, AFFINE)
    assert components.lung("left").lung_voxels == 3601 and components.lung("right").lung_voxels == 3600
    assert components.sides.startswith("components:") and "1 smaller piece" in components.sides
    assert components.score == 2
    # A mirrored affine (x grows with the column) swaps right and left.
    mirrored = AFFINE.copy()
    mirrored[0, 0] = 0.8
    assert assess_severity(labels, lungs(), CLASS_NAMES, VOXEL_ML, mirrored).lung("left").lesion_voxels == 382
    # So does a reader that stored the columns the other way round (the inverse it passes says so).
    flipped = assess_severity(labels, lungs(), CLASS_NAMES, VOXEL_ML, AFFINE,
                              to_stored=lambda volume: volume.transpose(2, 1, 0)[::-1])
    assert flipped.lung("left").lesion_voxels == 382
    # Lungs touching, lobe labels, no orientation: only the whole lung.
    touching = lungs((1, 1))
    touching[:, 2:38, 20:30] = 1
    lobes = np.where(lungs() == 2, np.arange(50)[None, None, :] % 3 + 2, lungs())  # values 1, 2, 3, 4
    for mask, oriented, why in (
        (touching, True, "one connected piece"),
        (lobes, True, "holds 4 values"),
        (lungs(), False, "no orientation"),
    ):
        severity = assess_severity(labels, mask, CLASS_NAMES, VOXEL_ML, AFFINE, oriented)
        assert why in severity.sides and severity.score is None and severity.lung("left") is None
        assert severity.lung("lungs").percent > 0
    assert split_lungs(np.zeros(SHAPE), AFFINE).rule == "the lung mask is empty"


def test_predict_reports_removals_severity_and_a_summary(inputs, tmp_path):
    result = predict(inputs["model"], inputs["chest"], "--out", tmp_path, "--lung-mask", inputs["lungs"],
                     "--restrict-to-lung", "--min-lesion-ml", "0.05", "--device", "cpu")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "lesions outside the lung mask removed: 80 voxel(s)" in text
    assert "under 0.05 ml (36 voxels) removed: 5 voxel(s)" in text
    labels = np.asarray(nib.load(tmp_path / "chest" / "labels.nii.gz").dataobj).transpose(2, 1, 0)
    assert np.bincount(labels.ravel(), minlength=4)[1:].tolist() == [301, 80, 80]
    report = json.loads((tmp_path / "chest" / "report.json").read_text())
    restrict, small = report["postprocessing"]
    assert restrict["removed"]["consolidation"] == {"voxels": 80, "volume_ml": pytest.approx(80 * VOXEL_ML)}
    assert restrict["classes_kept"] == ["effusion"]
    assert small["lesions_removed"] == 2 and small["removed"]["ground-glass"]["voxels"] == 5
    assert [m["voxels"] for m in report["classes"]] == [301, 80, 80, 461]
    severity = report["severity"]
    by_lung = {item["lung"]: item for item in severity["lungs"]}
    right, left = by_lung["right"], by_lung["left"]
    assert (right["lesion_voxels"], left["lesion_voxels"], severity["score"]) == (381, 0, 1)
    assert right["percent"] == pytest.approx(100 * 381 / 3600) and right["band"] == 1 and left["band"] == 0
    assert "Chung et al., Radiology 2020" in severity["scheme"]
    rows = {row["class"]: row for row in csv.DictReader((tmp_path / "chest" / "report.csv").open())}
    assert rows["consolidation"]["removed_voxels"] == "80" and rows["ground-glass"]["removed_voxels"] == "5"
    assert rows["all-lesions"]["removed_voxels"] == "85"
    [summary] = list(csv.DictReader((tmp_path / "summary.csv").open()))
    assert summary["case"] == "chest" and summary["severity_score"] == "1"
    assert summary["ground-glass_voxels"] == "301" and float(summary["ground-glass_ml"]) == pytest.approx(
        301 * VOXEL_ML, rel=1e-5)
    assert summary["right_band"] == "1" and summary["left_band"] == "0"
    assert summary["sides"] == "labels: lung mask values 1 and 2"
    assert float(summary["right_lung_ml"]) == pytest.approx(3600 * VOXEL_ML, rel=1e-5)
    assert "lung involvement" in text and "1/8" in text


def test_without_post_processing_the_specks_count(inputs, tmp_path):
    result = predict(inputs["model"], inputs["chest"], "--out", tmp_path, "--lung-mask", inputs["lungs"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "chest" / "report.json").read_text())
    assert report["postprocessing"] == [] and report["severity"]["score"] == 2  # B makes the left band 1
    rows = list(csv.DictReader((tmp_path / "chest" / "report.csv").open()))
    assert {row["removed_voxels"] for row in rows} == {""}


def test_post_processing_options_are_checked_before_any_work(inputs, tmp_path):
    png = tmp_path / "slice.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(png)
    out = tmp_path / "out"
    cases = [
        ((inputs["chest"], "--restrict-to-lung"), "--restrict-to-lung needs a lung mask: give --lung-mask"),
        ((inputs["chest"], png, "--min-lesion-ml", "1"), "--min-lesion-ml needs voxel sizes in mm, and"),
        ((inputs["chest"], png, "--lung-mask", inputs["lungs"], "--restrict-to-lung"),
         "is an image, which takes none"),
        ((inputs["chest"], "--min-lesion-ml", "-1"), "error: --min-lesion-ml -1.0: must be a finite number"),
        ((inputs["chest"], "--min-lesion-ml", "nan"), "error: --min-lesion-ml nan: must be a finite number"),
    ]
    for arguments, message in cases:
        result = predict(inputs["model"], *arguments, "--out", out)
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split()), result.output
        assert "Traceback" not in result.output
        assert not out.exists()
    save(tmp_path / "empty.nii.gz", np.zeros(SHAPE), np.uint8)
    empty = predict(inputs["model"], inputs["chest"], "--out", out, "--lung-mask", tmp_path / "empty.nii.gz")
    assert empty.exit_code == 2 and "empty.nii.gz holds no lung (every voxel is 0)" in " ".join(
        empty.output.split())
    assert not (out / "chest").exists()
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "summary.csv").write_text("case\n")
    again = predict(inputs["model"], inputs["chest"], "--out", tmp_path / "taken")
    assert again.exit_code == 2
    assert "summary.csv exists (an earlier prediction?)" in " ".join(again.output.split())
