"""onnxruntime builds: the mixed CPU + GPU install is named with the command that repairs it."""

from __future__ import annotations

import importlib
import sys

import pytest

from covseg.core.errors import CovsegError
from covseg.onnx import install


def _fake_distribution(folder, name: str, version: str) -> None:
    """An installed distribution as importlib.metadata finds it: a ``NAME-VERSION.dist-info`` folder."""
    info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _present() -> set[str]:
    return {name for name in (install.CPU_DISTRIBUTION, install.GPU_DISTRIBUTION)
            if install.installed_version(name) is not None}


def test_both_builds_name_the_one_to_remove(site):
    for name in {install.CPU_DISTRIBUTION, install.GPU_DISTRIBUTION} - _present():
        _fake_distribution(site, name, "1.99.0")
    on_gpu = install.mixed_install_message(gpu_present=True)
    on_cpu = install.mixed_install_message(gpu_present=False)
    assert "remove onnxruntime (this machine has a CUDA GPU)" in on_gpu
    assert on_gpu.endswith("`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu`")
    assert "remove onnxruntime-gpu (this machine shows no CUDA GPU)" in on_cpu
    assert on_cpu.endswith("&& pip install onnxruntime`")
    assert "\n" not in on_gpu + on_cpu


def test_one_build_says_nothing():
    assert len(_present()) == 1, "this environment must hold exactly one onnxruntime build"
    assert install.mixed_install_message(gpu_present=True) is None


def test_predict_and_export_warn_about_both_builds(site, tmp_path):
    from typer.testing import CliRunner

    from covseg.cli import app

    for name in {install.CPU_DISTRIBUTION, install.GPU_DISTRIBUTION} - _present():
        _fake_distribution(site, name, "1.99.0")
    missing = str(tmp_path / "missing.onnx")
    for arguments in (["export", str(tmp_path / "missing-run")],
                      ["predict", missing, str(tmp_path), "--out", str(tmp_path / "o")]):
        result = CliRunner().invoke(app, arguments)
        lines = result.stderr.splitlines()
        assert any(line.startswith("warning: both onnxruntime") for line in lines), result.stderr
        assert result.exit_code == 2  # and the step itself still fails with its own one line


def test_half_removed_install_is_one_line(tmp_path, monkeypatch):
    # What `pip uninstall onnxruntime` leaves when onnxruntime-gpu shared its folder: an empty package.
    # The real package must not be found: only this folder is on the path while importing.
    (tmp_path / "onnxruntime").mkdir()
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    importlib.invalidate_caches()
    with pytest.raises(CovsegError, match=r"onnxruntime is broken: its folder .*onnxruntime lacks its files"):
        install.import_onnxruntime()
    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)  # the real one for later tests
