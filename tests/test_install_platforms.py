"""covseg's dependencies resolve to wheels on Linux (x86-64, ARM), macOS (Apple silicon) and Windows.

``pip install --dry-run`` with another platform's tags resolves without installing (pip reads
wheel metadata only, PEP 658). The dependencies are given from pyproject.toml rather than ``.``:
with ``--only-binary=:all:`` pip refuses the local source tree itself. torch and torchvision are
left out: this machine's pip constraints cap them to its local Linux builds, so macOS and Windows
resolutions fail here for a reason users never meet (PyTorch publishes wheels for all four
platforms), and the torch resolution alone took minutes; timm's own requirement still brings a torch
into each resolution. The four resolutions run at once, and they start as soon as pytest has
collected these tests (tests/conftest.py calls :func:`start_early`): they wait on the network, not
the CPU, so the rest of the suite runs meanwhile instead of after them. Marked slow; skipped (one
line) only when no package index answers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "macosx_14_0_arm64", "win_amd64"]


LEFT_OUT = ("torch", "torchvision")


def _dependencies() -> list[str]:
    from packaging.requirements import Requirement

    with (ROOT / "pyproject.toml").open("rb") as file:
        requirements = tomllib.load(file)["project"]["dependencies"]
    return [text for text in requirements if Requirement(text).name not in LEFT_OUT]


def _compatible_tags(platform: str) -> list[str]:
    """``platform`` and the older tags its wheels may carry: pip expands neither a manylinux nor a
    macOS ``--platform`` itself (pip 23), and most projects ship manylinux2014 / macOS 11 wheels."""
    from packaging.tags import mac_platforms

    if platform.startswith("manylinux_2_"):
        minor, arch = platform.removeprefix("manylinux_2_").split("_", 1)
        older = [f"manylinux_2_{number}_{arch}" for number in range(int(minor), 16, -1)]
        return [*older, f"manylinux2014_{arch}"]
    if platform.startswith("macosx_"):
        major, minor, arch = platform.removeprefix("macosx_").split("_", 2)
        return list(mac_platforms((int(major), int(minor)), arch))
    return [platform]


def _start(platform: str, folder: Path) -> subprocess.Popen:
    report = folder / f"{platform}.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
               "--report", str(report), "--target", str(folder / "target"), "--only-binary=:all:",
               *(f"--platform={tag}" for tag in _compatible_tags(platform)),
               "--python-version", "3.11", "--implementation", "cp",
               "--disable-pip-version-check", *_dependencies()]
    # Lowest CPU priority: started at collection, they would otherwise slow the tests beside them.
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.nice(19))


_EARLY: dict[str, object] = {}
"""The dry runs started at collection: ``folder`` and ``started`` (platform -> process)."""


def start_early() -> None:
    """Start every platform's dry run now, in a folder of its own (removed by :func:`stop_early`)."""
    if not _EARLY:
        folder = Path(tempfile.mkdtemp(prefix="covseg-resolve-"))
        _EARLY.update(folder=folder, started={platform: _start(platform, folder) for platform in PLATFORMS})


def stop_early() -> None:
    """Kill what still runs and remove the folder (the end of the session, whatever happened)."""
    for process in _EARLY.get("started", {}).values():
        if process.poll() is None:
            process.kill()
            process.communicate()
    if "folder" in _EARLY:
        shutil.rmtree(_EARLY["folder"], ignore_errors=True)
    _EARLY.clear()


@pytest.fixture(scope="module")
def resolutions() -> tuple[Path, dict[str, tuple[int, str]]]:
    """Every platform's dry run, started together: (folder of the reports, platform -> (code, stderr))."""
    start_early()  # already started when pytest collected this module with the rest
    folder, started = _EARLY["folder"], _EARLY["started"]
    finished = {}
    for platform, process in started.items():
        try:
            _, stderr = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
        finished[platform] = (process.returncode, stderr)
    return folder, finished


def _index_unreachable(stderr: str) -> bool:
    signs = ("Failed to establish a new connection", "Name or service not known",
             "Temporary failure in name resolution", "Network is unreachable")
    return any(sign in stderr for sign in signs)


@pytest.mark.slow
@pytest.mark.parametrize("platform", PLATFORMS)
def test_dependencies_resolve_to_wheels_with_cpu_onnxruntime(platform, resolutions):
    folder, finished = resolutions
    code, stderr = finished[platform]
    if code != 0 and _index_unreachable(stderr):
        pytest.skip(f"no package index reachable to resolve for {platform}")
    assert code == 0, stderr[-3000:]
    report = json.loads((folder / f"{platform}.json").read_text())
    names = {item["metadata"]["name"].lower() for item in report["install"]}
    assert "onnxruntime" in names
    assert "onnxruntime-gpu" not in names
    assert {"onnx", "onnxscript", "numpy", "opencv-python-headless", "timm"} <= names
    assert not (folder / "target").exists()  # a dry run installs nothing
