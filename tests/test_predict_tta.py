"""Test-time augmentation and probabilities, with numbers known in closed form.

The model is tests/intensity_model.py's gradient model: the class-1 logit is x[c + 1] - x[c - 1]
along each row (zeros beyond the edge), the others 0. On slices whose left half is air (-1000 HU,
model input 0.2333 in the lung window) and right half +150 HU (input 1), the gradient per column is
0.2333, 0, 0, 0.7667, 0.7667, 0, 0, -1: without TTA class 1 wins where it is positive (columns 0, 3,
4); mirrored left-right it flips sign, so with ``--tta flips`` it wins wherever it is not 0 (columns
0, 3, 4, 7), since (e^g - 1) / (3 + e^g) + (e^-g - 1) / (3 + e^-g)
= 2 (e^g - 1)^2 / ((3 + e^g)(3 e^g + 1)) > 0.
"""

from __future__ import annotations

import itertools
import json
import math

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from covseg.cli import app
from covseg.evaluation.evaluate import evaluate_model, flip_averaged_probabilities
from covseg.inference.predict import native_probabilities, softmax
from covseg.inference.probabilities import LEVELS
from covseg.tta import FLIP_SETS, describe
from tests.intensity_model import write_gradient_model, write_intensity_model

runner = CliRunner()
ROWS, COLUMNS, SLICES = 6, 8, 2
LOW = (-1000.0 + 1350.0) / 1500.0  # model input of -1000 HU in the lung window
GRADIENT = np.array([LOW, 0, 0, 1 - LOW, 1 - LOW, 0, 0, -1.0])  # per column, see the docstring


def p1(g: float) -> float:
    """Softmax of class 1 for logits (0, g, 0, 0)."""
    return math.exp(g) / (3 + math.exp(g))


@pytest.fixture(scope="module")
def step_volume(tmp_path_factory):
    """(X, Y, Z) = (8, 6, 2) HU, raw layout: display columns 0-3 air, 4-7 +150 HU; 1 x 1 x 2 mm."""
    folder = tmp_path_factory.mktemp("step")
    hu = np.full((COLUMNS, ROWS, SLICES), -1000, np.int16)
    hu[4:] = 150
    image = nib.Nifti1Image(hu, np.diag([-1.0, 1.0, 2.0, 1.0]))
    image.header.set_zooms((1.0, 1.0, 2.0))
    nib.save(image, folder / "step.nii.gz")
    return folder / "step.nii.gz"


@pytest.fixture(scope="module")
def gradient_model(tmp_path_factory):
    return write_gradient_model(tmp_path_factory.mktemp("model") / "gradient.onnx")


def predict(*arguments: object):
    return runner.invoke(app, ["predict", *map(str, arguments)])


def display_labels(path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj).transpose(2, 1, 0)  # (Z, rows, columns)


def test_tta_flips_averages_the_softmax_of_the_mirrored_slices(gradient_model, step_volume, tmp_path):
    plain = predict(gradient_model, step_volume, "--out", tmp_path / "plain", "--save-probabilities")
    assert plain.exit_code == 0, plain.output
    flipped = predict(gradient_model, step_volume, "--out", tmp_path / "tta", "--save-probabilities",
                      "--tta", "flips")
    assert flipped.exit_code == 0, flipped.output
    assert "test-time augmentation: flips (4 passes" in " ".join(flipped.output.split())
    labels = display_labels(tmp_path / "plain" / "step" / "labels.nii.gz")
    tta_labels = display_labels(tmp_path / "tta" / "step" / "labels.nii.gz")
    # Every row of every slice alike:
    np.testing.assert_array_equal(labels, np.broadcast_to([1, 0, 0, 1, 1, 0, 0, 0], labels.shape))
    np.testing.assert_array_equal(tta_labels, np.broadcast_to([1, 0, 0, 1, 1, 0, 0, 1], labels.shape))
    plain_report = json.loads((tmp_path / "plain" / "step" / "report.json").read_text())
    tta_report = json.loads((tmp_path / "tta" / "step" / "report.json").read_text())
    assert plain_report["classes"][0]["voxels"] == 3 * ROWS * SLICES == 36
    assert tta_report["classes"][0]["voxels"] == 4 * ROWS * SLICES == 48
    assert plain_report["classes"][0]["volume_ml"] == pytest.approx(36 * 0.002)
    assert plain_report["tta"] == "none (1 pass)" and tta_report["tta"] == describe("flips")
    # The probabilities: closed form, stored as uint16 / 65535 (one step is 1.5e-5).
    for folder, expected in (
        ("plain", [p1(g) for g in GRADIENT]),
        ("tta", [(p1(g) + p1(-g)) / 2 for g in GRADIENT]),
    ):
        stored = nib.load(tmp_path / folder / "step" / "probabilities" / "1_ground-glass.nii.gz")
        assert stored.get_data_dtype() == np.uint16
        assert stored.dataobj.slope == pytest.approx(1 / LEVELS)
        values = np.asarray(stored.get_fdata()).transpose(2, 1, 0)
        np.testing.assert_allclose(values[1, 3], expected, atol=0.6 / LEVELS)
        background = nib.load(tmp_path / folder / "step" / "probabilities" / "0_background.nii.gz")
        np.testing.assert_array_equal(stored.affine, background.affine)
        files = sorted((tmp_path / folder / "step" / "probabilities").iterdir())
        assert [path.name for path in files] == [
            "0_background.nii.gz", "1_ground-glass.nii.gz", "2_consolidation.nii.gz", "3_effusion.nii.gz"
        ]
        total = sum(nib.load(path).get_fdata() for path in files)
        np.testing.assert_allclose(total, 1.0, atol=2.0 / LEVELS)


def test_an_image_gets_float16_probabilities(gradient_model, tmp_path):
    pixels = np.zeros((ROWS, COLUMNS), np.uint8)
    pixels[:, 4:] = 255
    Image.fromarray(pixels).save(tmp_path / "step.png")
    result = predict(gradient_model, tmp_path / "step.png", "--out", tmp_path / "out", "--save-probabilities")
    assert result.exit_code == 0, result.output
    stored = np.load(tmp_path / "out" / "step" / "probabilities.npy", allow_pickle=False)
    assert stored.dtype == np.float16 and stored.shape == (4, ROWS, COLUMNS)
    gradient = [0, 0, 0, 1, 1, 0, 0, -1]  # 8-bit input: 0 and 1
    np.testing.assert_allclose(stored[1, 2], [p1(g) for g in gradient], atol=1e-3)


def test_probabilities_are_resized_bilinearly_then_the_argmax_taken():
    # Class 1 rises 0.2 -> 0.8 across two columns; enlarged to 8 columns with OpenCV's half-pixel
    # centres: source x = (j + 0.5) / 4 - 0.5, clamped at the edges.
    probabilities = np.zeros((1, 2, 2, 2), np.float32)
    probabilities[0, 1] = [[0.2, 0.8], [0.2, 0.8]]
    probabilities[0, 0] = 1 - probabilities[0, 1]
    resized = native_probabilities(probabilities, (4, 8))
    assert resized.shape == (1, 2, 4, 8)
    expected = [0.2, 0.2, 0.275, 0.425, 0.575, 0.725, 0.8, 0.8]
    np.testing.assert_allclose(resized[0, 1, 0], expected, atol=1e-6)
    np.testing.assert_allclose(resized[0, 0] + resized[0, 1], 1.0, atol=1e-6)
    # Many slices and classes go through OpenCV together (beyond what one call takes), enlarged
    # bilinearly or shrunk by area; each equals its own resize.
    batch = np.random.default_rng(0).random((70, 4, 9, 11)).astype(np.float32)
    for size, interpolation in (((19, 23), cv2.INTER_LINEAR), ((4, 5), cv2.INTER_AREA)):
        together = native_probabilities(batch, size)
        for index in (0, 69):
            alone = cv2.resize(np.ascontiguousarray(batch[index].transpose(1, 2, 0)), size[::-1],
                               interpolation=interpolation)
            np.testing.assert_allclose(together[index], alone.transpose(2, 0, 1), atol=1e-6)


def test_softmax_never_lets_nan_win():
    logits = np.array([[0.0, np.nan, 1.0, np.inf], [np.nan] * 4, [1.0, 2.0, 3.0, 4.0]], np.float32)
    probabilities = softmax(logits.T[None, :, :, None])[0, :, :, 0].T
    assert probabilities[0].argmax() == 3 and probabilities[0, 1] == 0.0
    np.testing.assert_array_equal(probabilities[1], 0.0)  # all NaN: background by argmax
    np.testing.assert_allclose(probabilities[2], np.exp([1, 2, 3, 4]) / np.exp([1, 2, 3, 4]).sum(), rtol=1e-6)


def test_a_model_at_a_smaller_size_gives_smooth_edges_at_the_native_size(tmp_path):
    """A diagonal edge through a 16x16 model: labels at 64x64 follow the bilinear probabilities."""
    model = write_intensity_model(tmp_path / "small.onnx", image_size=16)
    rows, columns = np.mgrid[:64, :64]
    # Consolidation left of the edge, effusion right of it: no other class centre lies between them,
    # so the area-averaged intensities at the edge are one or the other.
    hu = np.where(columns > rows * 0.7 + 10, 100, -200).astype(np.int16)
    image = nib.Nifti1Image(hu.T[:, :, None], np.diag([-0.7, 0.7, 5.0, 1.0]))
    nib.save(image, tmp_path / "edge.nii.gz")
    result = predict(model, tmp_path / "edge.nii.gz", "--out", tmp_path / "out", "--intensity", "hu")
    assert result.exit_code == 0, result.output
    labels = display_labels(tmp_path / "out" / "edge" / "labels.nii.gz")[0]
    assert set(np.unique(labels)) == {2, 3}
    # Each row's first effusion column: a 16x16 label map scaled 4x changes it every 4 rows
    # (16 values); the bilinear probabilities move it row by row.
    edges = [int(np.argmax(row == 3)) for row in labels]
    assert len(set(edges)) > 16
    assert all(0 <= later - earlier <= 2 for earlier, later in itertools.pairwise(edges))


class GradientModel(nn.Module):
    """The gradient model in PyTorch (same weights as the ONNX one)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, (1, 3), padding=(0, 1), bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[1, 0, 0] = torch.tensor([-1.0, 0.0, 1.0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_eval_tta_uses_the_same_flips_in_pytorch():
    images = torch.full((SLICES, 3, ROWS, COLUMNS), LOW)
    images[..., 4:] = 1.0
    truth = torch.zeros((SLICES, ROWS, COLUMNS), dtype=torch.long)
    truth[..., [0, 3, 4, 7]] = 1  # what flip-averaging predicts
    loader = DataLoader(TensorDataset(images, truth), batch_size=1)
    model = GradientModel()
    plain, _ = evaluate_model(model, loader, torch.device("cpu"), 4)
    flipped, metrics = evaluate_model(model, loader, torch.device("cpu"), 4, tta="flips")
    assert plain[1, 0] == ROWS * SLICES and plain[1, 1] == 3 * ROWS * SLICES  # column 7 missed
    assert flipped[1, 1] == 4 * ROWS * SLICES and metrics["pixel_accuracy"] == 1.0
    with torch.no_grad():
        averaged = flip_averaged_probabilities(model, images[:1], "flips")[0, 1, 0]
    np.testing.assert_allclose(averaged.numpy(), [(p1(g) + p1(-g)) / 2 for g in GRADIENT], rtol=1e-5)
    assert FLIP_SETS["flips"] == ((), (-1,), (-2,), (-2, -1))
