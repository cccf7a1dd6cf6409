"""The CLI through typer's CliRunner and through the installed `covseg` command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from covseg import __version__
from covseg.cli import app
from tests.test_models import MODEL_NAMES

runner = CliRunner()
COVSEG = str(Path(sys.executable).with_name("covseg"))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"covseg {__version__}"


def test_models_lists_the_seven_with_family_and_size():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    for name in MODEL_NAMES:
        assert name in rows, f"{name} missing from `covseg models`"
    cells = [cell.strip() for cell in rows["fcn-resnet50"].split("│")]
    assert cells[2] == "fcn" and cells[3] == "32.9" and cells[4] == "covseg"
    assert [cell.strip() for cell in rows["unet"].split("│")][3] == "31.0"


def test_plugins_lists_the_builtin_plugins_with_versions():
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "covseg_builtin.models.deeplabv3plus" in result.stdout
    assert f"│ {__version__}" in result.stdout


def test_installed_command_runs_as_a_subprocess():
    result = subprocess.run([COVSEG, "models"], capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in MODEL_NAMES)
    module = subprocess.run([sys.executable, "-m", "covseg", "--version"], capture_output=True, text=True)
    assert module.stdout.strip() == f"covseg {__version__}"


def test_a_plugin_that_fails_to_import_does_not_take_the_cli_down(tmp_path):
    # A real installed distribution (a .dist-info on sys.path) whose entry point cannot import.
    dist_info = tmp_path / "covseg_broken-0.3.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: covseg-broken\nVersion: 0.3\n")
    (dist_info / "entry_points.txt").write_text("[covseg]\nbroken = covseg_broken_plugin\n")
    (tmp_path / "covseg_broken_plugin.py").write_text(
        textwrap.dedent("""
            import a_module_that_is_not_installed
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "250"}

    models = subprocess.run([COVSEG, "models"], capture_output=True, text=True, env=env, check=False)
    assert models.returncode == 0, models.stderr
    assert all(name in models.stdout for name in MODEL_NAMES)
    assert "1 plugin(s) failed to load: broken (covseg-broken)" in " ".join(models.stderr.split())

    plugins = subprocess.run([COVSEG, "plugins"], capture_output=True, text=True, env=env, check=False)
    assert plugins.returncode == 0, plugins.stderr
    failure_row = next(line for line in plugins.stdout.splitlines() if "covseg-broken" in line)
    assert "0.3" in failure_row
    assert "ModuleNotFoundError" in failure_row and "a_module_that_is_not_installed" in failure_row
