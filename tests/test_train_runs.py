"""`covseg train`: the run folder, exact resume after Ctrl-C, and one-line errors for bad input.

Everything runs a narrow unet (``base_channels=8``: the same code at a fraction of the compute and
checkpoint size) on tiny phantom slices (32x32, 8 training slices, batch 4) on the CPU with
deterministic algorithms and no DataLoader workers, so two runs of one config give equal weights.
"""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from covseg.checkpoint import load_checkpoint
from covseg.cli import app
from covseg.evaluation.trained import load_trained_model
from covseg.training import TrainConfig, TrainingInterrupted, train
from covseg.training import api as training_api

runner = CliRunner(env={"COLUMNS": "250"})
TINY = [
    "--model-option",
    "base_channels=8",
    "--dataset-option",
    "count=10",
    "--dataset-option",
    "size=48",
    "--image-size",
    "32",
    "--batch-size",
    "4",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--deterministic",
]
TIMING_KEYS = {"images_per_s", "epoch_time_s"}


def tiny_config(tmp_path, **overrides) -> TrainConfig:
    values = {
        "model_options": {"base_channels": 8},
        "dataset_options": {"count": "10", "size": "48"},
        "image_size": 32,
        "batch_size": 4,
        "workers": 0,
        "device": "cpu",
        "deterministic": True,
        "out": str(tmp_path),
        "epochs": 3,
    }
    return TrainConfig.from_recipe("unet", **{**values, **overrides})


def only_run(folder):
    (run,) = [path for path in (folder / "unet").iterdir() if path.is_dir()]
    return run


def read_records(run):
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [
        {key: value for key, value in json.loads(line).items() if key not in TIMING_KEYS} for line in lines
    ]


def test_cli_run_writes_every_file_and_records_explicit_options(tmp_path):
    result = runner.invoke(
        app,
        ["train", "unet", "--epochs", "2", "--lr", "0.002", "--out", str(tmp_path), *TINY],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    assert "No --dataset/--data given: training on the embedded phantom" in result.output
    run = only_run(tmp_path)
    assert {p.name for p in run.iterdir()} == {
        "config.json",
        "split.json",
        "metrics.jsonl",
        "best.pt",
        "last.pt",
        "summary.json",
        "slice_confusions.json",
    }
    config = json.loads((run / "config.json").read_text())
    assert config["lr"] == 0.002 and config["epochs"] == 2  # explicit options win over the recipe
    assert config["optimizer"] == "adamw" and config["recipe"] == "default" and config["dataset"] == "phantom"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert {"train_loss", "lr", "images_per_s", "epoch_time_s", "miou", "lesion_miou", "iou/effusion"} <= set(
        records[0]
    )
    summary = json.loads((run / "summary.json").read_text())
    assert {
        "model",
        "best_epoch",
        "best_metrics",
        "final_metrics",
        "epochs_run",
        "wall_time_s",
        "train_images_per_s",
        "params_m",
        "run_dir",
    } <= set(summary)
    best = max(records, key=lambda record: record["miou"])
    assert summary["best_epoch"] == best["epoch"] and summary["best_metrics"]["miou"] == best["miou"]
    assert summary["final_metrics"]["miou"] == records[-1]["miou"] and summary["epochs_run"] == 2
    split = json.loads((run / "split.json").read_text())
    assert len(split["train_ids"]) == 8 and len(split["val_ids"]) == 2
    # best.pt is what eval/export/predict load: weights-only, with its input settings.
    trained = load_trained_model(run)
    assert trained.model_name == "unet" and trained.image_size == 32
    assert trained.checkpoint["epoch"] == summary["best_epoch"]
    assert trained.checkpoint["normalisation"] == config["normalisation"]
    assert "best (epoch" in result.output  # the final table


class CtrlCInEpoch:
    """Stands in for train_one_epoch: Ctrl-C after ``batches`` batches of epoch ``epoch``."""

    def __init__(self, epoch: int, batches: int):
        self.epoch, self.batches, self.calls = epoch, batches, 0
        self.real = training_api.train_one_epoch

    def __call__(self, model, loader, *args, **kwargs):
        self.calls += 1
        if self.calls == self.epoch:
            loader = self.interrupted(loader)
        return self.real(model, loader, *args, **kwargs)

    def interrupted(self, loader):
        for index, batch in enumerate(loader):
            if index == self.batches:
                raise KeyboardInterrupt
            yield batch


class BreaksAfter(torch.nn.Module):
    """A loss that turns NaN after ``good_steps`` steps (as a diverging run's would)."""

    def __init__(self, loss: torch.nn.Module, good_steps: int):
        super().__init__()
        self.loss, self.good_steps, self.steps = loss, good_steps, 0

    def forward(self, logits, target):
        self.steps += 1
        value = self.loss(logits, target)
        return value * float("nan") if self.steps > self.good_steps else value


@pytest.mark.slow
def test_ctrl_c_leaves_a_checkpoint_that_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    straight = train(tiny_config(tmp_path / "straight"))

    # Ctrl-C after the first batch of epoch 2: last.pt still holds epoch 1.
    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch(epoch=2, batches=1))
    result = runner.invoke(app, ["train", "unet", "--epochs", "3", "--out", str(tmp_path / "killed"), *TINY])
    assert result.exit_code == 130, result.output
    run = only_run(tmp_path / "killed")
    assert f"resume with `covseg train --resume {run}`" in " ".join(result.output.split())
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert [record["epoch"] for record in read_records(run)] == [1]
    monkeypatch.undo()

    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming {run} after epoch 1 of 3" in " ".join(resumed.output.split())
    expected, actual = load_checkpoint(straight / "last.pt"), load_checkpoint(run / "last.pt")
    assert actual["epoch"] == expected["epoch"] == 3
    for name, tensor in expected["state_dict"].items():
        assert torch.equal(tensor, actual["state_dict"][name]), name
    assert read_records(run) == read_records(straight)
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (straight, run)]
    assert summaries[0]["best_metrics"] == summaries[1]["best_metrics"]
    # best.pt keeps its per-slice confusions across the resume: the same validation interval.
    assert summaries[0]["validation"] == summaries[1]["validation"]


def test_nan_loss_stops_with_one_line_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_build_loss = training_api.build_loss
    # Two steps per epoch: epoch 1 is good, epoch 2 goes NaN.
    monkeypatch.setattr(training_api, "build_loss", lambda *args: BreaksAfter(real_build_loss(*args), 2))
    result = runner.invoke(app, ["train", "unet", "--epochs", "2", "--out", str(tmp_path), *TINY])
    assert result.exit_code == 2
    run = only_run(tmp_path)
    assert len(result.stderr.strip().splitlines()) == 1
    message = " ".join(result.stderr.split())
    assert message.startswith("error: the training loss became nan in epoch 2")
    assert f"{run / 'last.pt'} keeps epoch 1, the last good one" in message
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    weights = load_checkpoint(run / "last.pt")["state_dict"].values()
    assert all(torch.isfinite(tensor.float()).all() for tensor in weights)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["unte"], "error: unknown model 'unte'. Did you mean unet?"),
        (["unet", "--dataset", "phantomm"], "error: unknown dataset 'phantomm'. Did you mean phantom?"),
        (["unet", "--batch-size", "9"],
         "error: --batch-size 9 is larger than the training set (8 slices after the validation and test"),
        (["unet", "--epochs", "0"], "error: --epochs 0: must be between 1 and 100000"),
        (["unet", "--epochs", "ten"], "error: --epochs ten: expected an integer"),
        (["unet", "--lr", "nan"], "error: --lr nan: expected a finite number"),
        (["unet", "--recipe", "fastest"], "error: --recipe fastest: unknown recipe"),
        ([], "error: give a MODEL to train"),
    ],
)
def test_bad_input_gets_one_line(tmp_path, arguments, message):
    # TINY holds --batch-size 4; a later --batch-size wins, as click keeps the last value.
    result = runner.invoke(app, ["train", *arguments[:1], "--out", str(tmp_path), *TINY, *arguments[1:]])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_but_absent(tmp_path):
    result = runner.invoke(app, ["train", "unet", "--device", "cuda", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --device cuda: CUDA is not available on this machine"


def test_resume_refuses_a_folder_that_is_not_a_run_and_changed_settings(tmp_path, monkeypatch):
    (tmp_path / "notes").mkdir()
    result = runner.invoke(app, ["train", "--resume", str(tmp_path / "notes")])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --resume {tmp_path / 'notes'}: not a covseg run folder (no config.json, split.json, last.pt)"
    )
    missing = runner.invoke(app, ["train", "--resume", str(tmp_path / "nowhere")])
    assert missing.stderr.strip() == f"error: --resume {tmp_path / 'nowhere'}: no such folder"

    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch(epoch=1, batches=0))
    with pytest.raises(TrainingInterrupted) as interrupted:
        train(tiny_config(tmp_path / "runs"))
    assert interrupted.value.epoch == 0  # resumable from the start: last.pt is written before epoch 1
    changed = runner.invoke(app, ["train", "--resume", str(interrupted.value.run_dir), "--lr", "0.1"])
    assert changed.exit_code == 2
    assert changed.stderr.strip().startswith("error: --resume keeps the run's settings; --lr cannot change")
