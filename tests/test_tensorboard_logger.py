"""`--log tensorboard`: event files that TensorBoard's own reader loads, with every scalar and the
validation overlays per epoch; unknown loggers and a missing package are one line before any run
folder; library messages reach the terminal as plain text (never markup)."""

from __future__ import annotations

import io
import json
import logging

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.commands._logging import ConsoleHandler, setup_logging
from covseg.core.errors import CovsegError
from covseg.training import TrainConfig
from covseg.training.api import RECORD_KEYS
from covseg.training.run_plugins import resolve_plugins
from tests.fake_plugins import installed, write_distribution

runner = CliRunner(env={"COLUMNS": "250"})
TINY = ["--model-option", "base_channels=4", "--dataset-option", "count=10", "--dataset-option", "size=32",
        "--image-size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]
MARKUP = "[bold red]runs[/bold red]"


def train_cli(tmp_path, *arguments):
    return runner.invoke(app, ["train", "unet", *arguments, "--out", str(tmp_path / "runs"), *TINY])


def test_tensorboard_reads_every_scalar_and_the_overlays_of_every_epoch(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / MARKUP  # user text in a message: shown as it is, never as markup
    result = runner.invoke(app, ["train", "unet", "--epochs", "2", "--log", "tensorboard", "--out", str(out),
                                 *TINY])
    assert result.exit_code == 0, result.output
    (run,) = (out / "unet").iterdir()
    assert f"-> {run}" in " ".join(result.output.split()) and f"Run folder: {run}" in result.output
    assert json.loads((run / "config.json").read_text())["loggers"] == ["tensorboard"]

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    metrics = [key for key in records[0] if key not in RECORD_KEYS]
    expected = {"train/loss": "train_loss", "train/lr": "lr", "speed/images_per_s": "images_per_s",
                **{f"validation/{key}": key for key in metrics}}
    assert set(events.Tags()["scalars"]) == set(expected)
    assert {"validation/miou", "validation/iou/effusion", "validation/dice/ground-glass"} <= set(expected)
    for tag, key in expected.items():
        scalars = events.Scalars(tag)
        assert [scalar.step for scalar in scalars] == [1, 2], tag
        for scalar, record in zip(scalars, records, strict=True):
            if record[key] is None:  # NaN in the run, null in metrics.jsonl
                assert np.isnan(scalar.value), tag
            else:
                assert scalar.value == pytest.approx(record[key], rel=1e-6), tag

    val_ids = json.loads((run / "split.json").read_text())["val_ids"]
    images = events.Tags()["images"]
    assert len(images) == min(4, len(val_ids)) and all(tag.startswith("overlay/") for tag in images)
    assert {tag.removeprefix("overlay/") for tag in images} <= set(val_ids)
    for tag in images:
        pictures = events.Images(tag)
        assert [picture.step for picture in pictures] == [1, 2]
        for picture in pictures:
            assert (picture.width, picture.height) == (3 * 32 + 2 * 2, 32)  # image | truth | prediction
            decoded = np.asarray(Image.open(io.BytesIO(picture.encoded_image_string)).convert("RGB"))
            assert decoded.shape == (32, 100, 3)
            assert (decoded[:, 32:34] == 255).all()  # the white gap after the image


def test_logger_names_are_repeatable_or_comma_separated_and_unknown_ones_are_refused(tmp_path):
    config = TrainConfig.resolve("unet", options={"loggers": ["tensorboard,tensorboard", " tensorboard "]},
                                 from_cli=True)
    assert config.loggers == ["tensorboard"]
    result = train_cli(tmp_path, "--log", "tensorbord")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: unknown logger 'tensorbord'. Did you mean tensorboard? "
                                      "Installed loggers: tensorboard (see `covseg plugins`).")
    assert not (tmp_path / "runs").exists()


def test_without_the_tensorboard_package_it_names_the_extra(tmp_path, monkeypatch):
    import covseg_builtin.loggers.tensorboard as plugin

    real_find_spec = plugin.importlib.util.find_spec
    monkeypatch.setattr(plugin.importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args))
    result = train_cli(tmp_path, "--log", "tensorboard")
    assert result.exit_code == 2
    assert result.stderr.strip() == ("error: --log tensorboard needs the tensorboard package: "
                                      "pip install 'covseg[tensorboard]'")
    assert not (tmp_path / "runs").exists()


FAILING_LOGGER = """
    from covseg.plugins import LoggerEntry, hookimpl

    def create():
        raise RuntimeError("tracking server refused")

    @hookimpl
    def covseg_loggers():
        return [LoggerEntry("remote", create, "Needs a server.")]
"""


def test_a_logger_that_cannot_start_is_one_line_naming_it(tmp_path, monkeypatch):
    write_distribution(tmp_path, "covseg-remote", "1.1", {"remote_logger": FAILING_LOGGER})
    with installed(monkeypatch, tmp_path):
        config = TrainConfig.resolve("unet", options={"loggers": ["remote"]}, from_cli=True)
        with pytest.raises(CovsegError) as error:
            resolve_plugins(config)
    assert str(error.value) == ("logger 'remote' (covseg-remote 1.1) failed to start: RuntimeError: "
                                "tracking server refused")


def test_log_records_reach_the_consoles_as_plain_text(capsys):
    setup_logging()
    setup_logging()  # once only: no line twice
    assert sum(isinstance(handler, ConsoleHandler) for handler in logging.getLogger().handlers) == 1
    logger = logging.getLogger("covseg.test")
    logger.info("scans[/2020] [bold]x[/bold] done")
    logger.warning("folder [red]alarm[/red]\x1b[31m")
    logging.getLogger("another.library").info("not shown: other libraries log from WARNING")
    captured = capsys.readouterr()
    assert captured.out == "scans[/2020] [bold]x[/bold] done\n"
    assert captured.err == "warning: folder [red]alarm[/red]\\x1b[31m\n"
