"""One meaning per option word: deprecated spellings still work with a one-line notice; --device
takes cuda:N everywhere; `covseg models` fits 80 columns; `covseg demo` keeps every promise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.onnx.session import choose_providers, parse_device
from tests.tiny_model import tiny_model_installed

runner = CliRunner()


def test_export_onnx_flag_is_a_deprecated_no_op_and_no_onnx_is_refused(tmp_path, monkeypatch):
    # The tiny test plugin's model (tests/tiny_model.py): the flag is the subject, not unet's size.
    with tiny_model_installed(tmp_path, monkeypatch) as model:
        out = tmp_path / f"{model}.onnx"
        old = runner.invoke(app, ["export", model, "--onnx", "--image-size", "32", "--out", str(out)])
    assert old.exit_code == 0, old.output
    assert out.is_file()
    notices = [line for line in old.stderr.splitlines() if "--onnx" in line]
    assert notices == ["warning: --onnx is deprecated and does nothing (ONNX is the one export format); "
                       "drop it"]
    refused = runner.invoke(app, ["export", "unet", "--no-onnx", "--out", str(tmp_path / "x.onnx")])
    assert refused.exit_code == 2
    assert refused.output.strip() == ("error: --no-onnx leaves nothing to export: ONNX is the one export "
                                      "format")
    assert "--onnx" not in runner.invoke(app, ["export", "--help"]).output


@pytest.mark.parametrize(("text", "parsed"), [("auto", ("auto", 0)), ("cpu", ("cpu", 0)),
                                              ("cuda", ("cuda", 0)), ("cuda:3", ("cuda", 3))])
def test_device_spellings(text, parsed):
    assert parse_device(text) == parsed


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:1", "mps"])
def test_bad_device_is_one_line(text):
    with pytest.raises(CovsegError, match=rf"^--device {text}: expected auto, cpu, cuda or cuda:N$"):
        parse_device(text)


def test_predict_takes_cuda_n_and_refuses_a_gpu_that_is_not_there(tmp_path, monkeypatch):
    from covseg.onnx import session

    monkeypatch.setattr(session, "cuda_usable", lambda: True)
    monkeypatch.setattr(session, "cuda_device_count", lambda: 2)
    monkeypatch.setattr(session, "tensorrt_usable", lambda: False)
    monkeypatch.setattr(session, "_preload_cuda_libraries", lambda: None)
    assert choose_providers("cuda:1")[0] == ("CUDAExecutionProvider", {"device_id": 1})
    with pytest.raises(CovsegError, match=r"^--device cuda:2: onnxruntime sees 2 CUDA GPU\(s\)"):
        choose_providers("cuda:2")
    typo = runner.invoke(app, ["predict", str(tmp_path / "m.onnx"), str(tmp_path), "--device", "cuda:one",
                               "--out", str(tmp_path / "out")])
    assert typo.exit_code == 2
    assert typo.output.strip() == "error: --device cuda:one: expected auto, cpu, cuda or cuda:N"


def test_models_fits_80_columns():
    env = {**os.environ, "COLUMNS": "80"}
    run = subprocess.run([sys.executable, "-m", "covseg", "models"], capture_output=True, text=True, env=env,
                         check=True)
    assert max(len(line) for line in run.stdout.splitlines()) <= 80


def test_demo_refuses_an_out_that_is_a_file_or_a_full_folder(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    result = runner.invoke(app, ["demo", "--out", str(afile)])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: --out {afile} is a file; give a new folder"]
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.splitlines() == [
        f"error: --out {tmp_path} exists and is not an empty folder; give a new one"]


@pytest.mark.slow
def test_demo_writes_every_promised_file(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    (run,) = (out / "runs" / "unet").iterdir()
    case = out / "predictions" / "phantom_ct"
    for path in (run / "best.pt", run / "summary.json", out / "unet.onnx", out / "phantom_ct.nii.gz",
                 out / "phantom_lungs.nii.gz", out / "phantom_truth.nii.gz", case / "labels.nii.gz",
                 case / "report.json", case / "report.csv", out / "predictions" / "summary.csv"):
        assert path.is_file(), path
    from covseg_builtin.datasets.phantom import FIELD_OF_VIEW_MM

    report = json.loads((case / "report.json").read_text())
    pixel_mm = FIELD_OF_VIEW_MM / 64
    assert report["spacing_mm"] == pytest.approx([pixel_mm, pixel_mm, 5.0])
    assert report["voxel_ml"] == pytest.approx(pixel_mm**2 * 5.0 / 1000)
    names = [measure["name"] for measure in report["classes"]]
    assert names == ["ground-glass", "consolidation", "effusion", "all-lesions"]
    for measure in report["classes"]:
        assert measure["volume_ml"] == pytest.approx(measure["voxels"] * report["voxel_ml"])
    assert f"lesion report: {case / 'report.json'}" in result.stdout
    assert "overlay picture (with legend): " in result.stdout


def test_the_readme_gives_the_demo_volume_its_true_voxel_size(tmp_path):
    import re

    import nibabel as nib

    from covseg.commands.demo import write_phantom_volume

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    documented = re.search(r"phantom_ct\.nii\.gz`: LPS, ([\d.]+) x ([\d.]+) x ([\d.]+) mm voxels", readme)
    assert documented is not None
    zooms = nib.load(write_phantom_volume(tmp_path, count=2)["volume"]).header.get_zooms()
    assert tuple(float(value) for value in documented.groups()) == tuple(float(zoom) for zoom in zooms)
    assert zooms == (5.46875, 5.46875, 5.0)


def test_no_documented_export_command_passes_the_deprecated_onnx_flag():
    root = Path(__file__).resolve().parents[1]
    for document in (root / "README.md", root / "DEVELOPERS.md", root / "exports" / "README.md"):
        commands = [line for line in document.read_text().splitlines() if "covseg export" in line]
        assert not [line for line in commands if "--onnx" in line], document
