"""What each command loads at start-up, and which packages may import which.

Start-up time itself is measured by ``benchmarks/startup_time.py``; here only the modules loaded
are checked, each command in a fresh interpreter (:mod:`tests.import_checks`).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from covseg import __version__
from tests.import_checks import HEAVY, run_covseg

LIGHT_COMMANDS = [
    pytest.param(["--help"], id="help"),
    pytest.param(["--version"], id="version"),
    pytest.param(["predict", "--help"], id="predict-help"),
    pytest.param(["export", "--help"], id="export-help"),
    pytest.param(["eval", "--help"], id="eval-help"),
    pytest.param(["train", "--help"], id="train-help"),
    pytest.param(["benchmark", "--help"], id="benchmark-help"),
    pytest.param(["demo", "--help"], id="demo-help"),
    pytest.param(["data", "--help"], id="data-help"),
    pytest.param(["data", "list"], id="data-list"),
    pytest.param(["plugins"], id="plugins"),
    pytest.param(["models"], id="models"),
]


@pytest.mark.parametrize("arguments", LIGHT_COMMANDS)
def test_commands_start_without_torch_timm_albumentations_opencv_or_onnxruntime(arguments):
    run = run_covseg(*arguments)
    assert run.returncode == 0, run.stderr
    assert run.loaded == [], f"covseg {' '.join(arguments)} loaded {run.loaded}"
    if arguments == ["--version"]:
        assert run.stdout.strip() == f"covseg {__version__}"


def test_predict_help_loads_neither_nibabel_nor_the_dicom_packages():
    run = run_covseg("predict", "--help", watched=("nibabel", "pydicom", "highdicom"))
    assert run.returncode == 0, run.stderr
    assert run.loaded == [] and "--series" in run.stdout and "dicom-seg" in run.stdout


def test_the_import_check_catches_a_command_that_needs_torch(tmp_path):
    """The blocker works: `covseg eval` needs torch, so it is seen trying, and fails without it."""
    run = run_covseg("eval", tmp_path / "best.pt", blocked=("torch",))
    assert run.returncode != 0
    assert "torch" in run.attempted and "torch" not in run.loaded
    free = run_covseg("eval", tmp_path / "best.pt")
    assert "torch" in free.loaded  # and without the blocker it loads it


def _modules_after_importing(packages: list[str]) -> set[str]:
    """The ``covseg.*`` and heavy modules loaded by importing every module of ``packages``."""
    code = (
        "import importlib, json, pkgutil, sys\n"
        f"for package in {packages!r}:\n"
        "    module = importlib.import_module(package)\n"
        "    for info in pkgutil.walk_packages(module.__path__, package + '.'):\n"
        "        importlib.import_module(info.name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names = json.loads(result.stdout)
    return {name for name in names if name.startswith("covseg") or name.partition(".")[0] in HEAVY}


def _under(modules: set[str], package: str) -> set[str]:
    return {name for name in modules if name == package or name.startswith(package + ".")}


def test_inference_imports_nothing_from_export_or_training_and_no_torch():
    loaded = _modules_after_importing(["covseg.inference", "covseg.onnx"])
    for package in ("covseg.export", "covseg.training", "covseg.evaluation", "covseg.data.dataset",
                    "covseg.data.augment", "torch", "albumentations", "timm", "highdicom"):
        assert not _under(loaded, package), f"covseg.inference loads {sorted(_under(loaded, package))}"


def test_export_and_the_shared_onnx_package_never_import_inference():
    loaded = _modules_after_importing(["covseg.export", "covseg.onnx"])
    assert not _under(loaded, "covseg.inference")
    onnx_only = _modules_after_importing(["covseg.onnx"])
    for package in ("covseg.export", "covseg.inference", "torch"):
        assert not _under(onnx_only, package)
