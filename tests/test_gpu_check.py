"""benchmarks/gpu_check.sh, the one-call GPU check, run here as its CPU dry run.

``GPU_CHECK_DRY_RUN=1`` runs every step at tiny sizes on the CPU in bf16 and channels-last, as on a
GPU: environment, the speed table, the probe epoch that sizes the schedule, training with a
held-out test score, and ``--compile``. The models are the tiny plugin's (unet's compiled training
step alone takes minutes on two cores); the compiled run is then resumed and exported here. The
schedule's arithmetic and the budget's skips are checked on their own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from covseg.checkpoint import load_checkpoint
from covseg.cli import app
from tests.tiny_model import MODEL, tiny_model_installed, write_tiny_plugin

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "benchmarks" / "gpu_check.sh"
runner = CliRunner()
FILES = {"report.md", "results.json", "train_speed.md", "train_speed.json", "gpu_check.log"}


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def environment(tmp_path: Path, medseg100: Path, **variables: str) -> dict[str, str]:
    """The check's environment: everything it and inductor write stays under ``tmp_path``."""
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    plugins = write_tiny_plugin(tmp_path / "plugins") if not (tmp_path / "plugins").exists() else \
        tmp_path / "plugins"
    return {**os.environ, "PYTHON": sys.executable, "COVSEG_MEDSEG100": str(medseg100),
            "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
            "GPU_CHECK_OUT": str(tmp_path / "out"), "GPU_CHECK_WORK": str(tmp_path / "work"),
            "TMPDIR": str(temp), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor"),
            # inductor for a handful of kernels: no 150 MB of precompiled headers
            "TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS": "0",
            "OMP_NUM_THREADS": "2", **variables}


def run_check(env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=timeout)


# ---- sizing the schedule ------------------------------------------------------------------------------
def test_epoch_times_scale_the_probe_by_the_speed_table():
    gpu_check = load_gpu_check()
    speeds = {"slow": 50.0, "fast": 100.0, "failed": None}
    estimates = gpu_check.epoch_seconds("slow", 10.0, speeds, ["slow", "fast", "failed", "unmeasured"])
    assert estimates == {"slow": 10.0, "fast": 5.0, "failed": 10.0, "unmeasured": 10.0}
    assert gpu_check.epoch_seconds("slow", 8.0, {}, ["a"]) == {"a": 8.0}  # no speed table at all


def test_the_schedule_takes_the_most_epochs_that_fit_and_drops_models_only_when_one_epoch_does_not():
    gpu_check = load_gpu_check()
    # 280 s after two start-ups of 10 s; 15 s per epoch of both: 18 epochs.
    schedule = gpu_check.plan_schedule(300, 10, {"a": 5.0, "b": 10.0}, max_epochs=20)
    assert (schedule.epochs, schedule.models, schedule.skipped) == (18, ["a", "b"], {})
    assert schedule.estimates_s == {"a": 100.0, "b": 190.0}
    assert gpu_check.plan_schedule(300, 10, {"a": 5.0, "b": 10.0}, max_epochs=4).epochs == 4
    tight = gpu_check.plan_schedule(40, 10, {"a": 5.0, "b": 10.0, "c": 10.0}, max_epochs=20)
    assert (tight.epochs, tight.models) == (1, ["a", "b"])
    assert tight.skipped == {"c": "not started: one epoch of every model needs ~55 s, 40 s were left for "
                                  "training"}
    none = gpu_check.plan_schedule(5, 10, {"a": 5.0}, max_epochs=20)
    assert (none.epochs, none.models, list(none.skipped)) == (0, [], ["a"])


def test_settings_come_from_the_environment_and_bad_numbers_stop_it(tmp_path):
    gpu_check = load_gpu_check()
    gpu = gpu_check.CheckSettings.from_environment({"GPU_CHECK_OUT": str(tmp_path / "o")})
    assert (gpu.device, gpu.image_size, gpu.budget_s, gpu.max_epochs, gpu.precision) == ("cuda", 512, 480, 20,
                                                                                          "bf16")
    assert gpu.work == tmp_path / "o-work"
    dry = gpu_check.CheckSettings.from_environment({"GPU_CHECK_DRY_RUN": "1", "GPU_CHECK_IMAGE_SIZE": "64"})
    assert (dry.device, dry.image_size, dry.speed_size, dry.max_epochs, dry.workers) == ("cpu", 64, 32, 1, 0)
    with pytest.raises(SystemExit, match="GPU_CHECK_BUDGET_S=soon: expected a number"):
        gpu_check.CheckSettings.from_environment({"GPU_CHECK_BUDGET_S": "soon"})


# ---- the script ----------------------------------------------------------------------------------------
def test_missing_data_is_one_line(tmp_path):
    check = run_check({**os.environ, "COVSEG_MEDSEG100": str(tmp_path / "nowhere")}, timeout=60)
    assert check.returncode == 2
    assert check.stderr.strip() == (f"error: no MedSeg slices at {tmp_path / 'nowhere'} (expected images/ "
                                    "and masks/); set COVSEG_MEDSEG100")


def test_without_a_gpu_it_points_to_the_dry_run(tmp_path, medseg100_dir):
    check = run_check(environment(tmp_path, medseg100_dir), timeout=300)
    assert check.returncode == 2
    assert "no CUDA GPU is visible; GPU_CHECK_DRY_RUN=1 runs every step on the CPU" in check.stdout
    assert json.loads((tmp_path / "out" / "results.json").read_text())["failed"] == [
        {"what": "environment", "error": "no CUDA GPU"}]


def test_a_budget_that_is_spent_skips_every_step_and_says_so(tmp_path, medseg100_dir):
    check = run_check(environment(tmp_path, medseg100_dir, GPU_CHECK_DRY_RUN="1", GPU_CHECK_BUDGET_S="1",
                                  GPU_CHECK_MODELS=MODEL, GPU_CHECK_COMPILE_MODEL=MODEL), timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [item["what"] for item in results["skipped"]] == ["speed table", f"training of {MODEL}",
                                                              f"--compile of {MODEL}"]
    assert f"SKIPPED training of {MODEL}: no time left" in check.stdout
    assert not (tmp_path / "work" / "runs").exists()


@pytest.mark.slow
def test_the_dry_run_runs_every_step_and_leaves_five_small_files(tmp_path, medseg100_dir, monkeypatch):
    env = environment(tmp_path, medseg100_dir, GPU_CHECK_DRY_RUN="1", GPU_CHECK_MODELS=MODEL,
                      GPU_CHECK_COMPILE_MODEL=MODEL)
    check = run_check(env)
    assert check.returncode == 0, check.stdout[-4000:] + check.stderr[-4000:]
    out = tmp_path / "out"
    assert {path.name for path in out.iterdir()} == FILES
    assert all(path.stat().st_size < 200_000 for path in out.iterdir())
    results = json.loads((out / "results.json").read_text())
    assert results["skipped"] == results["failed"] == []
    assert [item["step"] for item in results["timeline"]] == ["environment", "speed", "training", "compile"]

    (row,) = results["speed"]["rows"]
    assert row["model"] == MODEL and row["ratio"] > 0 and results["speed"]["covseg_settings"] == (
        "bf16, channels-last")
    assert results["probe"]["status"] == "done" and results["schedule"]["epochs"] == 1
    (record,) = results["models"]
    assert record["status"] == "done" and record["precision"] == "bf16"
    assert record["test"]["slices"] == 16 and 0 <= record["test"]["metrics"]["miou"] <= 1  # 20 % of 80
    config = json.loads((Path(record["run_dir"]) / "config.json").read_text())
    assert (config["precision"], config["channels_last"], config["image_size"]) == ("bf16", True, 32)
    compiled = results["compile"]
    assert compiled["status"] == "done" and compiled["plain_weights"] is True

    report = (out / "report.md").read_text()
    assert "**Dry run**" in report and f"| {MODEL} | bf16 |" in report
    assert "| a: reference fp32 eager (img/s) | b: covseg (img/s) |" in report
    assert report in check.stdout  # printed as well
    assert (out / "gpu_check.log").read_text() == check.stdout + check.stderr

    # The compiled run's files are a plain run's: it resumes without compiling, and exports. Both in
    # this process, with the same plugin installed here (two torch start-ups fewer).
    run = Path(compiled["run_dir"])
    assert not any("_orig_mod." in key for key in load_checkpoint(run / "last.pt")["state_dict"])
    with tiny_model_installed(tmp_path, monkeypatch):
        resumed = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2", "--no-compile"])
        assert resumed.exit_code == 0, resumed.output[-3000:]
        exported = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "tiny.onnx")])
        assert exported.exit_code == 0, exported.output[-3000:]
    graph = onnx.load(tmp_path / "tiny.onnx").graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
