"""Ordinary faults at every command's boundary: full disks, read-only folders, files where folders
belong, SIGTERM, damaged run files and user text that looks like markup. Each ends as one
``error:`` line (exit 2) naming the path, with nothing half-written left behind."""

from __future__ import annotations

import errno
import json
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
# Tiny phantom slices on the CPU; `covseg benchmark` takes the data settings only.
DATA = ["--dataset-option", "count=8", "--dataset-option", "size=32", "--image-size", "32",
        "--batch-size", "2", "--workers", "0", "--device", "cpu"]
# Runs train a narrow unet (base_channels=8): the same code at a fraction of the compute and of the
# full width's 370 MB checkpoints, which the faults here are not about.
TINY = ["--model-option", "base_channels=8", *DATA]


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
    result = runner.invoke(app, ["benchmark", "--models", "unet", "--epochs", "1", *DATA,
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
    # An existing folder "cannot be written"; a new one "cannot be created", naming it (not its parent).
    why = (f"{read_only_folder} is on a read-only file system",
           f"no permission to write in {read_only_folder}")
    commands = {
        ("train", "unet", "--epochs", "1", *TINY, "--out", str(read_only_folder)):  # runs go to OUT/unet/
            f"--out {read_only_folder}: cannot create {read_only_folder / 'unet'}: ",
        ("benchmark", "--models", "unet", "--epochs", "1", *DATA, "--latency-size", "0", "--out",
         str(read_only_folder / "bench")): f"--out {read_only_folder / 'bench'}: cannot create "
                                           f"{read_only_folder / 'bench'}: ",
        ("predict", str(exported), str(scan), "--out", str(read_only_folder / "p"), "--device", "cpu"):
            f"--out {read_only_folder / 'p'}: cannot create {read_only_folder / 'p'}: ",
        ("eval", str(trained_run), "--json", str(read_only_folder / "m"), "--device", "cpu"):
            f"--json {read_only_folder / 'm'}: cannot write {read_only_folder}: ",
        ("eval", str(trained_run), "--save-predictions", str(read_only_folder / "m"), "--device", "cpu"):
            f"--save-predictions {read_only_folder / 'm'}: cannot create {read_only_folder / 'm'}: ",
        ("demo", "--epochs", "1", "--out", str(read_only_folder / "d")):
            f"--out {read_only_folder / 'd'}: cannot create {read_only_folder / 'd'}: ",
    }
    for command, start in commands.items():
        result = runner.invoke(app, list(command))
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), result.output
        if "cannot create" in start:
            assert lines[0].removeprefix(f"error: {start}") in why, lines[0]
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


@pytest.mark.parametrize(("number", "why"), [
    (errno.ENOENT, "{parent} takes no new files or folders"),  # /proc, /sys: ENOENT for an existing parent
    (errno.EROFS, "{parent} is on a read-only file system"),
    (errno.EACCES, "no permission to write in {parent}"),
    (errno.ENOSPC, "no space left on the device (free some space or choose another folder)"),
])
def test_check_creatable_names_the_folder_it_cannot_create_and_why(tmp_path, monkeypatch, number, why):
    import covseg.files
    from covseg.core.errors import CovsegError
    from covseg.files import check_creatable, check_writable

    def refuse(path):
        raise OSError(number, os.strerror(number), str(path))

    monkeypatch.setattr(covseg.files, "_open_for_write", refuse)
    for check in (check_creatable, check_writable):
        with pytest.raises(CovsegError) as raised:
            check(tmp_path / "x" / "runs", "--out x/runs")
        expected = f"--out x/runs: cannot create {tmp_path / 'x'}: " + why.format(parent=tmp_path)
        assert str(raised.value) == expected
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(CovsegError) as raised:  # an existing folder: "cannot write" it
        check_creatable(tmp_path)
    assert str(raised.value).startswith(f"cannot write {tmp_path}: ")


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_proc_is_named_as_taking_no_new_folders(trained_run):
    lines = {
        ("demo", "--epochs", "1", "--out", "/proc/x"): "error: --out /proc/x: cannot create /proc/x: /proc "
                                                       "takes no new files or folders",
        ("train", "unet", "--epochs", "1", *TINY, "--out", "/proc/x/runs"):
            "error: --out /proc/x/runs: cannot create /proc/x: /proc takes no new files or folders",
        ("export", str(trained_run), "--out", "/proc/x"):
            "error: --out /proc/x: cannot create /proc/x: /proc takes no new files or folders",
    }
    for command, line in lines.items():
        result = runner.invoke(app, list(command))
        assert result.exit_code == 2, result.output
        assert result.output.splitlines() == [line]  # demo: refused before its first step is printed


def test_demo_checks_out_before_its_first_step(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = runner.invoke(app, ["demo", "--epochs", "1", "--out", str(afile / "sub")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: --out {afile / 'sub'}: cannot create {afile / 'sub'}: "
                                          f"{afile} is a file, not a folder"]


def test_eval_json_refuses_an_existing_file_without_overwrite(trained_run, tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("earlier results")
    result = runner.invoke(app, ["eval", str(trained_run), "--json", str(target), "--device", "cpu"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: --json {target} exists; pass --overwrite to replace it"]
    assert target.read_text() == "earlier results"
    again = runner.invoke(app, ["eval", str(trained_run), "--json", str(target), "--device", "cpu",
                                "--overwrite"])
    assert again.exit_code == 0, again.output
    assert json.loads(target.read_text())["model"] == "unet"


def test_predict_checks_classes_and_device_before_exporting_a_run(trained_run, scan, tmp_path, monkeypatch):
    from covseg.onnx import session

    monkeypatch.setattr(session, "cuda_usable", lambda: False)
    monkeypatch.setattr(session, "cuda_device_count", lambda: 0)
    lines = {
        ("--classes", "bg,a,a,c"): "error: --classes bg,a,a,c: class 'a' is named twice",
        ("--device", "cuda:1"): "error: --device cuda:1: onnxruntime sees 0 CUDA GPU(s) on this machine; use "
                                "--device cpu or auto",
    }
    for options, line in lines.items():
        result = runner.invoke(app, ["predict", str(trained_run), str(scan), "--out", str(tmp_path / "o"),
                                     *options])
        assert result.exit_code == 2
        assert result.output.splitlines() == [line]  # no "exporting ..." lines before it
    assert list(tmp_path.iterdir()) == []


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
