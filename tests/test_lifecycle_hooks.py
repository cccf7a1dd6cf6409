"""Lifecycle hooks: called on every plugin in order with read-only arguments; a raising hook is reported
once and the run finishes; rank > 0 calls none; what no plugin listens to costs nothing.

The plugins are real distributions (a .dist-info with entry points) on sys.path. Runs are unet with
4 base channels on tiny phantom slices on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping

import numpy as np
import pytest

from covseg.core.errors import CovsegError
from covseg.core.lifecycle import RunHooks, read_only
from covseg.core.registry import PluginInfo, Registry
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.data.split import Split
from covseg.files import json_safe
from covseg.plugins import hookimpl
from covseg.runs import read_metrics
from covseg.training import TrainConfig, TrainingInterrupted, train
from covseg.training import api as training_api
from covseg.training.api import RECORD_KEYS
from tests.fake_plugins import installed, write_distribution
from tests.test_train_runs import BreaksAfter, CtrlCInEpoch

RECORDER = """
    from covseg.plugins import hookimpl

    CALLS = []

    @hookimpl
    def covseg_train_start(run_dir, config, first_epoch, steps_per_epoch):
        CALLS.append(("start", run_dir, config, first_epoch, steps_per_epoch))

    @hookimpl
    def covseg_train_progress(epoch, steps, steps_per_epoch, loss):
        CALLS.append(("progress", epoch, steps, steps_per_epoch, loss))

    @hookimpl
    def covseg_epoch_end(run_dir, config, epoch, record, metrics, best_epoch, best_metrics, samples):
        first, again = samples.predict(), samples.predict()
        try:
            config["lr"] = 1.0
            changed = True
        except TypeError:
            changed = False
        CALLS.append(("epoch", epoch, dict(record), dict(metrics), best_epoch, dict(best_metrics),
                      samples.ids, first, again, changed))

    @hookimpl
    def covseg_train_end(run_dir, config, status, summary):
        CALLS.append(("end", status, None if summary is None else dict(summary)))
"""

BROKEN = """
    from covseg.plugins import hookimpl

    ENDS = []

    @hookimpl
    def covseg_epoch_end(epoch):
        raise RuntimeError(f"lost the connection in epoch {epoch}")

    @hookimpl
    def covseg_train_end(status):
        ENDS.append(status)
"""


def plain(value):
    """A hook's read-only value as plain dicts and lists again."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, tuple):
        return [plain(item) for item in value]
    return value


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    values = {"dataset_options": {"count": "16", "size": "32"}, "image_size": 32, "batch_size": 1,
              "workers": 0, "device": "cpu", "deterministic": True, "epochs": 2, "out": str(tmp_path),
              "model_options": {"base_channels": 4}, "recalibrate_bn": False}
    return TrainConfig.from_recipe("unet", **{**values, **overrides})


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    write_distribution(tmp_path / "site", "covseg-recorder", "1.0", {"recorder": RECORDER})
    write_distribution(tmp_path / "site", "covseg-broken", "2.0", {"broken_logger": BROKEN})
    with installed(monkeypatch, tmp_path / "site"):
        import broken_logger
        import recorder

        yield recorder.CALLS, broken_logger.ENDS


def test_hooks_come_in_order_with_read_only_arguments_and_a_raising_one_is_reported_once(
        tmp_path, plugins, caplog):
    calls, broken_ends = plugins
    with caplog.at_level(logging.WARNING, logger="covseg"):
        run = train(tiny_config(tmp_path / "runs"))
    assert [call[0] for call in calls] == ["start", "progress", "epoch", "progress", "epoch", "end"]

    split = Split.load(run / "split.json")
    steps = len(split.train_ids)  # batch 1
    _, run_dir, config, first_epoch, steps_per_epoch = calls[0]
    assert run_dir == run and first_epoch == 1 and steps_per_epoch == steps >= 10
    assert config["model"] == "unet" and config["model_options"]["base_channels"] == 4
    progress = [call for call in calls if call[0] == "progress"]
    assert [call[1] for call in progress] == [1, 2]
    for _, _, done, per_epoch, loss in progress:
        assert done == 10 and per_epoch == steps and math.isfinite(loss) and loss > 0

    records = read_metrics(run)
    epochs = [call for call in calls if call[0] == "epoch"]
    slices = load_slices("phantom", None, {"count": "16", "size": "32"})
    for (_, epoch, record, metrics, best_epoch, best_metrics, ids, first, again, changed), written in zip(
            epochs, records, strict=True):
        assert json_safe(record) == written and record["epoch"] == epoch  # NaN there, null in the file
        assert metrics == {key: value for key, value in record.items() if key not in RECORD_KEYS}
        best = max(records[:epoch], key=lambda item: item["miou"])
        assert best_epoch == best["epoch"] and best_metrics["miou"] == best["miou"]
        assert changed is False  # config is read-only
        assert ids == epochs[0][6] and set(ids) <= set(split.val_ids)
        assert len(ids) == min(4, len(split.val_ids))
        assert [sample.slice_id for sample in first] == list(ids)
        assert all(a is b for a, b in zip(first, again, strict=True))  # predicted once per epoch
        truths = SliceDataset(slices, ids, Normalisation(), image_size=32)
        for sample, (image, mask) in zip(first, truths, strict=True):
            assert sample.image.shape == sample.truth.shape == sample.prediction.shape == (32, 32)
            np.testing.assert_allclose(sample.image, image[0].numpy())
            np.testing.assert_array_equal(sample.truth, mask.numpy())
            assert sample.prediction.dtype == np.uint8 and sample.prediction.max() < 4
            assert not sample.prediction.flags.writeable
    assert calls[-1][:2] == ("end", "finished")
    assert json_safe(plain(calls[-1][2])) == json.loads((run / "summary.json").read_text())

    # The broken plugin: one warning naming it, its package and the hook; no further calls; the run finished.
    warnings = [record.getMessage() for record in caplog.records if record.name == "covseg.core.lifecycle"]
    assert warnings == ["plugin broken-logger (covseg-broken 2.0) failed in covseg_epoch_end: RuntimeError: "
                        "lost the connection in epoch 1; the run goes on without it"]
    assert broken_ends == []


def test_an_interrupted_run_ends_interrupted_and_its_resume_starts_after_the_checkpoint(
        tmp_path, plugins, monkeypatch):
    calls, _ = plugins
    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch(epoch=2, batches=0))
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(tiny_config(tmp_path / "runs"))
    assert [call[0] for call in calls] == ["start", "progress", "epoch", "end"]
    assert calls[-1] == ("end", "interrupted", None)
    monkeypatch.undo()
    calls.clear()
    run = interrupted.value.run_dir
    train(TrainConfig.load(run / "config.json"), resume=run)
    assert calls[0][0] == "start" and calls[0][3] == 2  # first_epoch: after the saved epoch 1
    assert [call[1] for call in calls if call[0] == "epoch"] == [2]
    assert calls[-1][:2] == ("end", "finished")


class EndOnly:
    """A caller's listener of the run's end alone."""

    def __init__(self):
        self.ends = []

    @hookimpl
    def covseg_train_end(self, status, summary):
        self.ends.append((status, summary))


def test_a_failing_run_ends_failed_and_what_no_plugin_listens_to_costs_nothing(tmp_path, monkeypatch):
    real_build_loss = training_api.build_loss
    monkeypatch.setattr(training_api, "build_loss", lambda *args: BreaksAfter(real_build_loss(*args), 0))
    progress_callbacks = []
    real_epoch = training_api.train_one_epoch

    def one_epoch(*args, **kwargs):
        progress_callbacks.append(kwargs["on_progress"])
        return real_epoch(*args, **kwargs)

    def no_samples(*args, **kwargs):
        raise AssertionError("validation samples built though no plugin listens to covseg_epoch_end")

    monkeypatch.setattr(training_api, "train_one_epoch", one_epoch)
    monkeypatch.setattr(training_api, "EpochSamples", no_samples)
    listener = EndOnly()
    with pytest.raises(CovsegError, match="the training loss became nan in epoch 1"):
        train(tiny_config(tmp_path / "runs", epochs=1), listeners=[listener])
    assert listener.ends == [("failed", None)]
    assert progress_callbacks == [None]  # no loss read back per step


def test_only_rank_0_calls_the_hooks_and_listeners_follow_one_run_only(tmp_path):
    registry = Registry(entry_points=[])
    plugin, listener = EndOnly(), EndOnly()
    registry.register(plugin, "end-only", package="covseg-tests")
    info = PluginInfo("listener", __name__, "tests", "")
    for rank_0 in (False, True):
        hooks = RunHooks(registry, [(listener, info)], enabled=rank_0)
        with hooks.attached():
            hooks.call("covseg_train_end", run_dir=tmp_path, config={}, status="finished", summary={})
            assert hooks.wanted("covseg_train_end") is rank_0
    assert plugin.ends == listener.ends == [("finished", {})]
    assert listener not in registry.manager.get_plugins() and plugin in registry.manager.get_plugins()


def test_read_only_freezes_nested_values():
    frozen = read_only({"a": {"b": [1, 2]}, "array": np.zeros(3), "tensor_free": "x"})
    with pytest.raises(TypeError):
        frozen["a"]["c"] = 1
    assert frozen["a"]["b"] == (1, 2)
    with pytest.raises(ValueError):
        frozen["array"][0] = 1.0
