"""Registry behaviour: look-up, suggestions, duplicate names, and isolation of broken plugins."""

from __future__ import annotations

import types

import pytest

from covseg.core.errors import CovsegError
from covseg.core.registry import Registry, get_registry
from covseg.plugins import MetricEntry, ModelEntry, hookimpl


def _model_plugin(module_name: str, *model_names: str) -> types.ModuleType:
    plugin = types.ModuleType(module_name)

    @hookimpl
    def covseg_models():
        return [ModelEntry(name, lambda **_: None, f"{name} for tests", "test") for name in model_names]

    plugin.covseg_models = covseg_models
    return plugin


def test_lookup_by_name_returns_the_entry_and_its_plugin():
    provided = get_registry().get("model", "fcn-resnet50")
    assert provided.entry.family == "fcn"
    assert provided.plugin.package == "covseg"
    assert provided.plugin.module == "covseg_builtin.models.torchvision_segmentation"


def test_unknown_name_suggests_close_matches_in_one_line():
    with pytest.raises(CovsegError) as raised:
        get_registry().model("deeplab-resnet-101")
    message = str(raised.value)
    assert "\n" not in message
    assert "unknown model 'deeplab-resnet-101'" in message
    assert "deeplab-resnet101" in message
    assert "covseg models" in message


def test_unknown_name_without_close_match_still_points_to_the_listing():
    with pytest.raises(CovsegError, match=r"unknown model 'zzz'\. See `covseg models`"):
        get_registry().model("zzz")


def test_same_name_from_two_packages_names_both():
    registry = Registry(entry_points=[])
    registry.register(_model_plugin("first_plugin", "twin"), name="first", package="covseg-first")
    registry.register(_model_plugin("second_plugin", "twin"), name="second", package="covseg-second")
    with pytest.raises(CovsegError) as raised:
        registry.models()
    message = str(raised.value)
    assert "covseg-first" in message and "covseg-second" in message and "'twin'" in message


def test_a_hook_that_raises_is_recorded_and_the_others_keep_working():
    registry = Registry(entry_points=[])
    broken = types.ModuleType("broken_plugin")

    @hookimpl
    def covseg_models():
        raise RuntimeError("weights table missing")

    broken.covseg_models = covseg_models
    registry.register(broken, name="broken", package="covseg-broken")
    registry.register(_model_plugin("good_plugin", "good-net"), name="good", package="covseg-good")

    assert [entry.name for entry in registry.models()] == ["good-net"]
    assert [(f.package, f.error) for f in registry.failures] == [
        ("covseg-broken", "RuntimeError: weights table missing")
    ]


def test_kinds_are_separate_name_spaces():
    registry = Registry(entry_points=[])
    plugin = _model_plugin("mixed_plugin", "dice")

    @hookimpl
    def covseg_metrics():
        return [MetricEntry("dice", lambda confusion: 0.0, "a metric named like a model")]

    plugin.covseg_metrics = covseg_metrics
    registry.register(plugin, name="mixed")
    assert registry.model("dice").family == "test"
    assert registry.metric("dice").description == "a metric named like a model"
