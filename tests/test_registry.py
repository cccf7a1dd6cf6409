"""Registry behaviour: look-up, suggestions, duplicate names, and isolation of broken plugins."""

from __future__ import annotations

import re
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
        get_registry().model("deeplabv3-resnet-101")
    message = str(raised.value)
    assert "\n" not in message
    assert "unknown model 'deeplabv3-resnet-101'" in message
    assert "deeplabv3-resnet101" in message
    assert "covseg models" in message


def test_unknown_name_without_close_match_still_points_to_the_listing():
    with pytest.raises(CovsegError, match=r"unknown model 'zzz'\. See `covseg models`"):
        get_registry().model("zzz")


def test_same_name_from_two_packages_is_listed_twice_and_refused_by_name():
    registry = Registry(entry_points=[])
    registry.register(_model_plugin("first_plugin", "twin", "solo"), name="first", package="covseg-first")
    registry.register(_model_plugin("second_plugin", "twin"), name="second", package="covseg-second")
    assert [(p.entry.name, p.plugin.package) for p in registry.provided("model")] == [
        ("solo", "covseg-first"), ("twin", "covseg-first"), ("twin", "covseg-second")
    ]
    assert [conflict.name for conflict in registry.conflicts("model")] == ["twin"]
    with pytest.raises(CovsegError) as raised:
        registry.model("twin")
    assert str(raised.value) == (
        "model name 'twin' is offered by first (covseg-first) and by second (covseg-second); "
        "disable one with COVSEG_DISABLE_PLUGINS=first or COVSEG_DISABLE_PLUGINS=second"
    )
    assert registry.model("solo").description == "solo for tests"


def test_a_name_offered_twice_by_one_plugin():
    registry = Registry(entry_points=[])
    registry.register(_model_plugin("double_plugin", "twin", "twin"), name="double", package="covseg-double")
    with pytest.raises(CovsegError, match=r"'twin' is offered twice by double \(covseg-double\); "
                                          r"disable one with COVSEG_DISABLE_PLUGINS=double$"):
        registry.model("twin")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ModelEntry("two words", lambda **_: None, "d", "f"), "model name 'two words' is not a name"),
        (lambda: ModelEntry("a,b", lambda **_: None, "d", "f"), "model name 'a,b' is not a name"),
        (lambda: ModelEntry("net", "text", "d", "f"), "model 'net': factory is a str, not a function"),
        (lambda: ModelEntry("net", lambda **_: None, "d", "f", aliases="old-net"), "aliases must be a tuple"),
        (lambda: ModelEntry("net", lambda **_: None, "d", "f", aliases=("net",)), "its own name as an alias"),
        (lambda: MetricEntry("[bold]x", lambda c: 0.0, "d"), "metric name '[bold]x' is not a name"),
    ],
)
def test_entries_refuse_what_cannot_be_a_name_or_a_function(make, message):
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        make()


def test_an_invalid_entry_is_a_failure_of_its_plugin_only():
    registry = Registry(entry_points=[])
    plugin = types.ModuleType("spaced_plugin")

    @hookimpl
    def covseg_models():
        return [ModelEntry("two words", lambda **_: None, "d", "f")]

    plugin.covseg_models = covseg_models
    registry.register(plugin, name="spaced", package="covseg-spaced")
    registry.register(_model_plugin("good_plugin", "good-net"), name="good", package="covseg-good")
    assert [entry.name for entry in registry.models()] == ["good-net"]
    assert [failure.line() for failure in registry.failures] == [
        "plugin spaced (covseg-spaced) failed in covseg_models: ValueError: model name 'two words' is not "
        "a name: use letters, digits and . _ + - (e.g. 'unet-lite')"
    ]


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
    assert [(f.package, f.stage, f.error) for f in registry.failures] == [
        ("covseg-broken", "covseg_models", "RuntimeError: weights table missing")
    ]
    with pytest.raises(CovsegError, match=r"unknown model 'bad-net'\. .*\(1 plugin failure\(s\): see "):
        registry.model("bad-net")


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
