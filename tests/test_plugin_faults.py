"""No plugin can take covseg down: every fault of a third-party plugin is one line naming its
package, and the other plugins and commands keep working. The plugins are real distributions
(a .dist-info with entry points) on sys.path, found the way installed ones are."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import create_model, get_registry
from covseg.data.loading import load_slices
from tests.fake_plugins import installed, write_distribution
from tests.test_models import MODEL_NAMES

runner = CliRunner()

EXITS_AT_IMPORT = """
    import sys
    sys.exit(3)
"""

RETURNS_NON_ENTRIES = """
    from covseg.plugins import ModelEntry, hookimpl

    def build(num_classes=4, in_channels=3, pretrained=False):
        import torch
        return torch.nn.Conv2d(in_channels, num_classes, 1)

    @hookimpl
    def covseg_models():
        return ["half-entry", ModelEntry("kept-net", build, "The valid one of three.", family="test"), None]
"""

RETURNS_NONE = """
    from covseg.plugins import hookimpl

    @hookimpl
    def covseg_metrics():
        return None
"""

FAULTY_ENTRIES = """
    from covseg.plugins import DatasetEntry, ModelEntry, hookimpl

    def raises(num_classes=4, in_channels=3, pretrained=False):
        raise RuntimeError("no kernel for this layer")

    def exits(num_classes=4, in_channels=3, pretrained=False):
        raise SystemExit(5)

    def not_a_module(num_classes=4, in_channels=3, pretrained=False):
        return "a network, promised"

    def wrong_logits(num_classes=4, in_channels=3, pretrained=False):
        import torch
        return torch.nn.Conv2d(in_channels, num_classes + 1, 1)

    def load_raises(path, options):
        raise KeyError("slices")

    @hookimpl
    def covseg_models():
        return [
            ModelEntry("raising-net", raises, "Raises when built.", family="test"),
            ModelEntry("exiting-net", exits, "Calls sys.exit when built.", family="test"),
            ModelEntry("string-net", not_a_module, "Returns a string.", family="test"),
            ModelEntry("five-class-net", wrong_logits, "Returns one class too many.", family="test"),
        ]

    @hookimpl
    def covseg_datasets():
        return [DatasetEntry("raising-data", load_raises, "Raises when loaded.", needs_path=False)]
"""


@pytest.fixture
def faulty_plugins(tmp_path, monkeypatch):
    folder = tmp_path / "site"
    write_distribution(folder, "covseg-exits", "0.1", {"covseg_exits_plugin": EXITS_AT_IMPORT},
                       {"exits": "covseg_exits_plugin"})
    write_distribution(folder, "covseg-half", "0.4", {"covseg_half_plugin": RETURNS_NON_ENTRIES},
                       {"half": "covseg_half_plugin"})
    write_distribution(folder, "covseg-none", "0.5", {"covseg_none_plugin": RETURNS_NONE},
                       {"none": "covseg_none_plugin"})
    write_distribution(folder, "covseg-faulty", "0.2", {"covseg_faulty_plugin": FAULTY_ENTRIES},
                       {"faulty": "covseg_faulty_plugin"})
    with installed(monkeypatch, folder):
        yield


def test_import_exit_and_non_entries_are_one_line_each_and_the_rest_is_loaded(faulty_plugins):
    registry = get_registry()
    names = {entry.name for entry in registry.models()}
    assert set(MODEL_NAMES) | {"kept-net", "raising-net", "string-net"} <= names
    assert {metric.name for metric in registry.metrics()} >= {"miou", "dice"}
    assert sorted(failure.line() for failure in registry.failures) == [
        "plugin exits (covseg-exits 0.1) failed at import: called sys.exit(3)",
        "plugin half (covseg-half 0.4) failed in covseg_models: returned 2 item(s) that are not "
        "ModelEntry, e.g. a str",
        "plugin none (covseg-none 0.5) failed in covseg_metrics: returned None, not a list of MetricEntry",
    ]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("raising-net", "model 'raising-net' (covseg-faulty 0.2) failed to build: "
                        "RuntimeError: no kernel for this layer"),
        ("exiting-net", "model 'exiting-net' (covseg-faulty 0.2) failed to build: called sys.exit(5)"),
        ("string-net", "model 'string-net' (covseg-faulty 0.2): its factory returned a str, "
                       "not a torch.nn.Module"),
    ],
)
def test_a_faulty_factory_is_one_line_naming_model_and_package(faulty_plugins, model, message):
    with pytest.raises(CovsegError) as raised:
        create_model(model)
    assert str(raised.value) == message
    assert create_model("kept-net")(torch.zeros(1, 3, 32, 32)).shape == (1, 4, 32, 32)


def test_wrong_logits_are_refused_at_the_first_forward_naming_model_and_package(faulty_plugins):
    model = create_model("five-class-net")
    with pytest.raises(CovsegError) as raised:
        model(torch.zeros(2, 3, 33, 40))
    assert str(raised.value) == (
        "model 'five-class-net' (covseg-faulty 0.2) returned logits of shape (2, 5, 33, 40) for input "
        "(2, 3, 33, 40); expected (N, num_classes, H, W) = (2, 4, 33, 40)"
    )
    with pytest.raises(CovsegError):  # still checked: the check goes only once a forward passes
        model(torch.zeros(1, 3, 32, 32))


def test_the_logits_check_goes_after_one_good_forward():
    model = create_model("unet")
    assert len(model._forward_hooks) == 1
    model.eval()(torch.zeros(1, 3, 32, 32))
    assert len(model._forward_hooks) == 0


def test_a_dataset_loader_that_raises_is_one_line_naming_dataset_and_package(faulty_plugins):
    with pytest.raises(CovsegError) as raised:
        load_slices("raising-data", None)
    assert str(raised.value) == (
        "dataset 'raising-data' (covseg-faulty 0.2) failed to load: KeyError: 'slices'"
    )
    assert len(load_slices("phantom", None, {"count": "2", "size": "32"})) == 2

    result = runner.invoke(app, ["data", "info", "raising-data"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {raised.value}"


def test_listing_commands_build_nothing_and_report_each_fault_in_one_line(faulty_plugins):
    models = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert models.exit_code == 0, models.output
    for name in [*MODEL_NAMES, "raising-net", "string-net", "exiting-net"]:
        assert f" {name} " in models.stdout
    warnings = models.stderr.splitlines()
    assert "warning: plugin exits (covseg-exits 0.1) failed at import: called sys.exit(3)" in warnings
    assert len(warnings) == 3

    plugins = runner.invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert plugins.exit_code == 0, plugins.output
    assert "failed at import: called sys.exit(3)" in plugins.stdout
    assert "covseg-half 0.4" in plugins.stdout and "models: kept-net" in plugins.stdout

    datasets = runner.invoke(app, ["data", "list"], env={"COLUMNS": "120"})
    assert datasets.exit_code == 0, datasets.output
    assert "raising-data" in datasets.stdout and "phantom" in datasets.stdout
    assert "warning: plugin none (covseg-none 0.5)" in datasets.stderr


def test_parameter_counts_guard_each_factory(faulty_plugins):
    result = runner.invoke(app, ["models", "--params"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    unet = rows.index(next(row for row in rows if row.split()[:1] == ["unet"]))
    assert "31.0 M params" in " ".join(rows[unet:unet + 4])
    raising = rows.index(next(row for row in rows if row.split()[:1] == ["raising-net"]))
    assert "params: build failed" in " ".join(rows[raising:raising + 4])
    assert ("warning: model 'raising-net' (covseg-faulty 0.2) failed to build: RuntimeError: no kernel "
            "for this layer") in result.stderr.splitlines()
    assert "warning: model 'string-net' (covseg-faulty 0.2): its factory returned a str" in result.stderr
