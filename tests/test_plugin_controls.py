"""The controls pytest and datasette give their plugins: disabling by name, tracing hook calls,
a clear way out of a name offered twice, built-ins found without entry-point metadata, and
listing without importing torch."""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core import discovery
from covseg.core.errors import CovsegError
from covseg.core.registry import Registry, create_model, get_registry
from tests.fake_plugins import installed, write_distribution
from tests.test_models import MODEL_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def twin_plugin(description: str) -> str:
    return f"""
        from covseg.plugins import ModelEntry, hookimpl

        def build(num_classes=4, in_channels=3, pretrained=False):
            import torch
            return torch.nn.Conv2d(in_channels, num_classes, 1)

        @hookimpl
        def covseg_models():
            return [ModelEntry("twin-net", build, "{description}", family="test")]
    """


# ---- built-ins without entry-point metadata ------------------------------------------------------
def test_walking_the_builtin_package_finds_exactly_what_pyproject_declares():
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["covseg"]
    walked = {source.name: source.module for source in discovery.builtin_sources()}
    assert walked == declared
    assert {source.package for source in discovery.builtin_sources()} == {"covseg"}


def test_a_source_checkout_without_metadata_still_has_the_builtins(monkeypatch):
    # What importlib.metadata sees in a checkout run with PYTHONPATH=src:plugins_builtin: maybe a
    # third party's entry points, none of covseg's own.
    third_party = importlib.metadata.EntryPoint("lite", "covseg_lite_plugin", "covseg")
    monkeypatch.setattr(discovery.importlib.metadata, "entry_points", lambda group: [third_party])
    registry = Registry()
    assert set(MODEL_NAMES) <= {entry.name for entry in registry.models()}
    assert {entry.name for entry in registry.datasets()} >= {"phantom", "folder", "medseg"}
    assert registry.get("model", "unet").plugin.module == "covseg_builtin.models.unet"
    assert [failure.name for failure in registry.failures] == ["lite"]  # tried, not installed


def test_listing_imports_no_torch():
    script = (
        "import sys\n"
        "from covseg.commands.plugins import models, plugins\n"
        "from covseg.commands.data import list_datasets\n"
        "models(params=False); plugins(); list_datasets()\n"
        "heavy = sorted({'torch', 'timm', 'torchvision'} & set(sys.modules))\n"
        "print('heavy:', heavy, file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    assert "heavy: []" in result.stderr
    assert "deeplabv3-resnet101" in result.stdout and "phantom" in result.stdout


# ---- COVSEG_DISABLE_PLUGINS ---------------------------------------------------------------------
@pytest.fixture
def exiting_plugin(tmp_path, monkeypatch):
    """A plugin whose import would write a marker and call sys.exit."""
    folder = tmp_path / "site"
    marker = tmp_path / "imported"
    source = f"""
        import pathlib, sys
        pathlib.Path({str(marker)!r}).write_text("imported")
        sys.exit(3)
    """
    write_distribution(folder, "covseg-exits", "0.1", {"covseg_exits_plugin": source},
                       {"exits": "covseg_exits_plugin"})
    with installed(monkeypatch, folder):
        yield marker


@pytest.mark.parametrize("setting", ["exits", "covseg-exits:exits", "covseg_exits", " exits ,"])
def test_a_disabled_plugin_is_not_even_imported(exiting_plugin, monkeypatch, setting):
    monkeypatch.setenv("COVSEG_DISABLE_PLUGINS", setting)
    registry = Registry()
    assert not exiting_plugin.exists()
    assert registry.failures == [] and registry.problems() == []
    assert [(info.name, info.package) for info in registry.disabled] == [("exits", "covseg-exits")]
    assert set(MODEL_NAMES) <= {entry.name for entry in registry.models()}


def test_without_the_setting_the_exit_is_one_failure_line(exiting_plugin, monkeypatch):
    monkeypatch.delenv("COVSEG_DISABLE_PLUGINS", raising=False)
    registry = Registry()
    assert exiting_plugin.exists()
    assert [failure.line() for failure in registry.failures] == [
        "plugin exits (covseg-exits 0.1) failed at import: called sys.exit(3)"
    ]


def test_disabled_plugins_are_listed_and_unknown_names_said(exiting_plugin, monkeypatch):
    monkeypatch.setenv("COVSEG_DISABLE_PLUGINS", "exits,no-such-plugin")
    get_registry.cache_clear()
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "disabled by COVSEG_DISABLE_PLUGINS" in result.stdout
    assert result.stderr.splitlines() == [
        "warning: COVSEG_DISABLE_PLUGINS names 'no-such-plugin', which is no installed plugin or "
        "package; see `covseg plugins`"
    ]


def test_disabling_a_builtin_removes_its_models(monkeypatch):
    monkeypatch.setenv("COVSEG_DISABLE_PLUGINS", "torchvision-segmentation")
    registry = Registry()
    names = {entry.name for entry in registry.models()}
    assert "unet" in names and "fcn-resnet50" not in names
    with pytest.raises(CovsegError, match="unknown model 'fcn-resnet50'"):
        registry.model("fcn-resnet50")


# ---- one name, two plugins ----------------------------------------------------------------------
@pytest.fixture
def twins(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    write_distribution(folder, "covseg-first", "1.0", {"covseg_first_twin": twin_plugin("first")},
                       {"twin": "covseg_first_twin"})
    write_distribution(folder, "covseg-second", "2.0", {"covseg_second_twin": twin_plugin("second")},
                       {"twin": "covseg_second_twin"})
    monkeypatch.delenv("COVSEG_DISABLE_PLUGINS", raising=False)
    with installed(monkeypatch, folder):
        yield


def test_a_name_offered_twice_is_listed_and_refused_only_when_used(twins, tmp_path):
    message = (
        "model name 'twin-net' is offered by twin (covseg-first 1.0) and by twin (covseg-second 2.0); "
        "disable one with COVSEG_DISABLE_PLUGINS=covseg-first:twin or "
        "COVSEG_DISABLE_PLUGINS=covseg-second:twin"
    )
    with pytest.raises(CovsegError) as raised:
        create_model("twin-net")
    assert str(raised.value) == message
    assert create_model("unet") is not None  # every other name still works

    listing = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert listing.exit_code == 0, listing.output
    rows = [row for row in listing.stdout.splitlines() if row.startswith(" twin-net ")]
    assert len(rows) == 2
    assert listing.stdout.count("name conflict") == 2
    assert "covseg_first_twin (covseg-first)" in listing.stdout
    assert "covseg_second_twin (covseg-second)" in listing.stdout
    assert listing.stderr.splitlines() == [f"warning: {message}"]

    train = runner.invoke(app, ["train", "twin-net", "--epochs", "1", "--out", str(tmp_path / "runs")])
    assert train.exit_code == 2
    assert train.stderr.splitlines() == [f"error: {message}"]
    assert not (tmp_path / "runs").exists()


def test_disabling_one_twin_resolves_the_name(twins, monkeypatch):
    monkeypatch.setenv("COVSEG_DISABLE_PLUGINS", "covseg-second:twin")
    get_registry.cache_clear()
    assert get_registry().get("model", "twin-net").plugin.package == "covseg-first"
    assert get_registry().problems() == []


def test_an_alias_clashing_with_another_name_is_a_conflict_too():
    from covseg.plugins import ModelEntry, hookimpl

    class Clash:
        @hookimpl
        def covseg_models(self):
            return [ModelEntry("deeplab-resnet50", lambda **_: None, "Claims an alias.", family="test")]

    registry = Registry()
    registry.register(Clash(), name="clash", package="covseg-clash")
    with pytest.raises(CovsegError, match=r"'deeplab-resnet50' is offered by clash \(covseg-clash\) and by "
                                          r"torchvision-segmentation \(covseg .*\); disable one"):
        registry.model("deeplab-resnet50")
    assert registry.model("deeplabv3-resnet50").family == "deeplabv3"


# ---- tracing ------------------------------------------------------------------------------------
def test_trace_logs_every_hook_call_with_its_plugin_and_result(caplog):
    caplog.set_level(logging.DEBUG, logger="covseg.plugins")
    registry = Registry(trace=True)
    registry.models()
    messages = [record.getMessage() for record in caplog.records if record.name == "covseg.plugins"]
    assert "calling covseg_models on covseg:unet" in messages
    assert "covseg_models on covseg:unet returned unet" in messages
    assert any(message.startswith("loaded plugin deeplabv3plus (covseg ") for message in messages)


def test_trace_switch_writes_to_stderr_in_a_real_run():
    script = "from covseg.core.registry import get_registry; get_registry().datasets()"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                            env={**os.environ, "COVSEG_TRACE_PLUGINS": "1"})
    assert result.returncode == 0, result.stderr
    assert "covseg.plugins: calling covseg_datasets on covseg:phantom" in result.stderr.splitlines()
    quiet = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                           env={**os.environ, "COVSEG_TRACE_PLUGINS": "0"})
    assert quiet.stderr == ""


# ---- the public surface -------------------------------------------------------------------------
def _covseg_imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [module for module in modules if module.split(".")[0] == "covseg"]


@pytest.mark.parametrize("folder", [
    "plugins_builtin/covseg_builtin/models",
    "plugins_builtin/covseg_builtin/metrics",
    "examples/covseg-plugin-example/src",
])
def test_plugins_import_only_the_public_surface(folder):
    # covseg.plugins (and its submodules) is the whole plugin surface; the rest is internal.
    files = sorted((REPO_ROOT / folder).rglob("*.py"))
    assert files
    for path in files:
        for module in _covseg_imports(path):
            assert module == "covseg.plugins" or module.startswith("covseg.plugins."), (path, module)


def test_the_public_surface_exports_what_it_lists():
    import covseg.plugins as surface

    assert all(hasattr(surface, name) for name in surface.__all__)
    assert {"hookimpl", "ModelEntry", "CLASS_NAMES", "check_known", "read_image", "read_ct_volume"} <= set(
        surface.__all__
    )
