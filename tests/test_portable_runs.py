"""A run folder evaluates from any working folder, after being moved, and on a copy of its data."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from covseg.cli import app
from covseg.data.loading import load_slices

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 1-epoch unet trained in folder A on ``--data data`` (typed relative): (A, run folder)."""
    home = tmp_path_factory.mktemp("A")
    slices = load_slices("phantom", None, {"count": "8", "size": "32"})
    for name in ("images", "masks"):
        (home / "data" / name).mkdir(parents=True)
    for slice_id, image, mask in zip(slices.ids, slices.images, slices.masks, strict=True):
        np.save(home / "data" / "images" / f"{slice_id}.npy", image.astype(np.float32))
        Image.fromarray(mask.astype(np.uint8)).save(home / "data" / "masks" / f"{slice_id}.png")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        result = runner.invoke(app, ["train", "unet", "--model-option", "base_channels=4", "--data", "data",
                                     "--epochs", "1", "--batch-size", "4", "--workers", "0",
                                     "--device", "cpu", "--out", "runs"])
    assert result.exit_code == 0, result.output
    (run,) = (home / "runs" / "unet").iterdir()
    return home, run


def _evaluate(run, *options):
    report = run.parent / f"eval-{len(list(run.parent.glob('eval-*')))}.json"
    result = runner.invoke(app, ["eval", str(run), "--device", "cpu", "--json", str(report), *options])
    return result, (json.loads(report.read_text()) if result.exit_code == 0 else None)


def test_config_keeps_the_typed_path_and_the_absolute_one(trained):
    home, run = trained
    config = json.loads((run / "config.json").read_text())
    assert config["data"] == "data"
    assert config["data_resolved"] == str((home / "data").resolve())


def test_eval_from_elsewhere_after_moves_and_on_a_copy_of_the_data(trained, tmp_path, monkeypatch):
    home, run = trained
    split = json.loads((run / "split.json").read_text())
    monkeypatch.chdir("/")
    result, record = _evaluate(run)
    assert result.exit_code == 0, result.output
    assert record["split"] == "validation split" and record["slices"] == len(split["val_ids"])

    moved_run = shutil.move(str(run), str(tmp_path / "moved-run"))
    result, moved = _evaluate(tmp_path / "moved-run")
    assert result.exit_code == 0, result.output
    assert moved["confusion"] == record["confusion"]

    copy = shutil.copytree(home / "data", tmp_path / "data-copy")
    shutil.move(str(home / "data"), str(tmp_path / "data-gone"))
    try:
        gone, _ = _evaluate(tmp_path / "moved-run")
        assert gone.exit_code == 2
        assert gone.output.strip() == (f"error: run {moved_run} was trained on data ({home / 'data'}), which "
                                       "does not exist here; pass --data with the data's new location")

        by_id, again = _evaluate(tmp_path / "moved-run", "--data", str(copy))
        assert by_id.exit_code == 0, by_id.output
        assert "evaluating the run's validation split by slice id in" in by_id.stdout
        assert again["split"] == "validation split" and again["slices"] == record["slices"]
        assert again["confusion"] == record["confusion"]
        assert not by_id.stderr

        train, on_train = _evaluate(tmp_path / "moved-run", "--data", str(copy), "--split", "train")
        assert train.exit_code == 0, train.output
        assert on_train["slices"] == len(split["train_ids"])
        count = len(split["train_ids"])
        assert train.stderr.strip() == (f"warning: {count} of the {count} evaluated slices were used for "
                                        "training (same ids): the scores are optimistic, not a validation "
                                        "score")
    finally:
        shutil.move(str(tmp_path / "data-gone"), str(home / "data"))
        shutil.move(moved_run, str(run))
