"""Ordinary faults at every command's boundary: full disks, read-only folders, files where folders
belong, SIGTERM, damaged run files and user text that looks like markup. Each ends as one
``error:`` line (exit 2) naming the path, with nothing half-written left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from covseg.cli import app
from covseg.files import TEMPORARY_SUFFIX
from covseg.runs import LAST_CHECKPOINT, METRICS_LOG, RUN_CONFIG

runner = CliRunner()
COVSEG = str(Path(sys.executable).with_name("covseg"))
TINY = ["--dataset-option", "count=8", "--dataset-option", "size=32", "--image-size", "32",
        "--batch-size", "2", "--workers", "0", "--device", "cpu"]


def one_error_line(result, *fragments: str) -> str:
    """The single ``error:`` line of a failed command, checked to contain ``fragments``."""
    output = result.output if hasattr(result, "output") else result.stderr
    assert result.exit_code == 2 if hasattr(result, "exit_code") else result.returncode == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(TEMPORARY_SUFFIX)]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    result = runner.invoke(app, ["train", "unet", "--epochs", "1", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return next((out / "unet").iterdir())


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("exports") / "unet.onnx"
    result = runner.invoke(app, ["export", str(trained_run), "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def scan(tmp_path_factory) -> Path:
    import nibabel as nib
    import numpy as np

    hu = np.full((32, 32, 3), -1000.0, np.float32)
    hu[8:24, 8:24] = 40.0
    path = tmp_path_factory.mktemp("inputs") / "scan.nii.gz"
    nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    return path


# ---- full disk: every writer --------------------------------------------------------------------
def test_train_on_a_full_disk(full_disk):
    result = runner.invoke(app, ["train", "unet", "--epochs", "1", *TINY, "--out", str(full_disk)])
    one_error_line(result, str(full_disk), "no space left")
    assert leftovers(full_disk) == []


def test_eval_json_and_predictions_on_a_full_disk(trained_run, full_disk):
    result = runner.invoke(app, ["eval", str(trained_run), "--device", "cpu", "--json",
                                 str(full_disk / "metrics.json")])
    one_error_line(result, str(full_disk / "metrics.json"), "no space left")
    result = runner.invoke(app, ["eval", str(trained_run), "--device", "cpu", "--save-predictions",
                                 str(full_disk / "preds")])
    one_error_line(result, str(full_disk / "preds"), "no space left")
    assert leftovers(full_disk) == []


def test_export_on_a_full_disk(trained_run, full_disk):
    target = full_disk / "unet.onnx"
    result = runner.invoke(app, ["export", str(trained_run), "--out", str(target)])
    # The model card is written first (it carries the file's sha256), so it is the one that fails.
    one_error_line(result, str(full_disk / "unet.MODEL.md"), "no space left")
    assert not target.exists() and leftovers(full_disk) == []


def test_predict_on_a_full_disk(exported, scan, full_disk):
    result = runner.invoke(app, ["predict", str(exported), str(scan), "--out", str(full_disk),
                                 "--device", "cpu"])
    one_error_line(result, str(full_disk), "no space left")
    assert leftovers(full_disk) == []


def test_benchmark_on_a_full_disk(full_disk):
    result = runner.invoke(app, ["benchmark", "--models", "unet", "--epochs", "1", *TINY,
                                 "--latency-size", "0", "--out", str(full_disk / "bench")])
    one_error_line(result, str(full_disk), "no space left")
    assert leftovers(full_disk) == []


# ---- read-only folders and files where folders belong -------------------------------------------
def test_read_only_output_folders(trained_run, exported, scan, read_only_folder):
    result = runner.invoke(app, ["train", "unet", "--epochs", "1", *TINY, "--out", str(read_only_folder)])
    one_error_line(result, str(read_only_folder))
    result = runner.invoke(app, ["predict", str(exported), str(scan), "--out", str(read_only_folder / "p"),
                                 "--device", "cpu"])
    one_error_line(result, str(read_only_folder))
    result = runner.invoke(app, ["export", str(trained_run), "--out", str(read_only_folder / "m.onnx")])
    one_error_line(result, str(read_only_folder))


def test_a_read_only_out_is_refused_before_anything_is_read(trained_run, exported, scan, read_only_folder):
    """train, benchmark and predict check --out first: the error is the whole output (no data line,
    no class weights, no model line), and nothing is created."""
    commands = {
        ("train", "unet", "--epochs", "1", *TINY, "--out", str(read_only_folder)): read_only_folder,
        ("benchmark", "--models", "unet", "--epochs", "1", *TINY, "--latency-size", "0", "--out",
         str(read_only_folder / "bench")): read_only_folder / "bench",
        ("predict", str(exported), str(scan), "--out", str(read_only_folder / "p"), "--device", "cpu"):
            read_only_folder / "p",
    }
    for command, out in commands.items():
        result = runner.invoke(app, list(command))
        assert result.exit_code == 2, result.output
        assert result.output.strip().startswith(f"error: --out {out}: cannot write {read_only_folder}: "), \
            result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    for option in ("--json", "--save-predictions"):  # eval: before the model and the data are read
        target = read_only_folder / "m"
        result = runner.invoke(app, ["eval", str(trained_run), option, str(target), "--device", "cpu"])
        assert result.exit_code == 2, result.output
        expected = f"error: {option} {target}: cannot write {read_only_folder}: "
        assert result.output.strip().startswith(expected), result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert list(read_only_folder.iterdir()) == []


def test_check_creatable_creates_nothing(tmp_path):
    from covseg.core.errors import CovsegError
    from covseg.files import check_creatable

    assert check_creatable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(CovsegError) as raised:
        check_creatable(tmp_path / "file" / "runs", "--out x")
    assert str(raised.value) == (f"--out x: cannot create {tmp_path / 'file' / 'runs'}: {tmp_path / 'file'} "
                                 "is a file, not a folder")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


def test_a_file_where_a_folder_belongs(tmp_path, exported, scan):
    blocker = tmp_path / "occupied"
    blocker.write_text("a file")
    result = runner.invoke(app, ["train", "unet", "--epochs", "1", *TINY, "--out", str(blocker)])
    one_error_line(result, str(blocker))
    result = runner.invoke(app, ["predict", str(exported), str(scan), "--out", str(blocker),
                                 "--device", "cpu"])
    one_error_line(result, str(blocker))
    assert blocker.read_text() == "a file"


# ---- SIGTERM: a Slurm/Kubernetes time limit stops training like Ctrl-C ------------------------------
def test_sigterm_leaves_a_resumable_run_and_says_how_to_resume(tmp_path):
    out = tmp_path / "runs"
    process = subprocess.Popen([COVSEG, "train", "unet", "--epochs", "300", "--warmup-epochs", "0", *TINY,
                                "--out", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "COLUMNS": "300"})
    deadline = time.monotonic() + 240
    metrics = None
    while time.monotonic() < deadline and process.poll() is None:
        runs = list((out / "unet").glob("*/" + METRICS_LOG)) if (out / "unet").is_dir() else []
        if runs and runs[0].read_text().strip():
            metrics = runs[0]
            break
        time.sleep(0.5)
    assert metrics is not None, "training produced no epoch in time"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    run = metrics.parent
    assert f"covseg train --resume {run}" in " ".join(stderr.split())
    assert (run / LAST_CHECKPOINT).is_file() and leftovers(run) == []
    saved = int(re.search(r"holds epoch (\d+)", stderr)[1])
    resumed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", str(saved + 1)])
    assert resumed.exit_code == 0, resumed.output


# ---- damaged run files --------------------------------------------------------------------------
def test_damaged_run_files_are_one_line(trained_run, tmp_path):
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(trained_run, cut)
    (cut / METRICS_LOG).write_text((cut / METRICS_LOG).read_text()[:-20])
    result = runner.invoke(app, ["train", "--resume", str(cut), "--epochs", "2"])
    one_error_line(result, str(cut / METRICS_LOG), "line 1")

    typed = tmp_path / "typed"
    shutil.copytree(trained_run, typed)
    config = (typed / RUN_CONFIG).read_text().replace('"image_size": 32', '"image_size": "big"')
    (typed / RUN_CONFIG).write_text(config)
    result = runner.invoke(app, ["train", "--resume", str(typed), "--epochs", "2"])
    one_error_line(result, str(typed / RUN_CONFIG), "image_size")


def test_stale_temporaries_in_a_run_folder_go_with_the_next_run(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    stale = run / f".last.pt.elsewhere-1.00000000{TEMPORARY_SUFFIX}"
    stale.write_bytes(b"half a checkpoint")
    os.utime(stale, (0, 0))
    result = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert not stale.exists()


def test_resume_to_fewer_epochs_is_refused_and_to_as_many_trains_nothing(trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    assert runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"]).exit_code == 0
    files = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}

    fewer = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "1"])
    assert fewer.exit_code == 2, fewer.output
    assert fewer.stderr.splitlines() == [
        f"error: --resume {run} has trained 2 epochs; --epochs must be at least 2"]
    same = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert same.exit_code == 0, same.output
    assert " ".join(same.stdout.split()) == (f"{run} has trained 2 epochs already, all of --epochs 2; "
                                             "nothing to train (give a larger --epochs to train on).")
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == files


# ---- user text is never markup ------------------------------------------------------------------
def test_paths_with_brackets_are_shown_as_typed(tmp_path):
    result = runner.invoke(app, ["data", "info", str(tmp_path / "scans[/2020]")])
    one_error_line(result, "scans[/2020]")
    out = tmp_path / "runs[x]"
    result = runner.invoke(app, ["train", "unet", "--epochs", "1", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert ", batch 2, 1 epoch -> " in " ".join(result.output.split())  # not "1 epochs"
    run = next((out / "unet").iterdir())
    assert str(run) in " ".join(result.output.split()).replace(" ", "") or str(run) in result.output
