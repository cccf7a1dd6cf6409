"""Every export has a model card: MODEL.md beside the file and the same text in its metadata,
tied to the file by hashes; `covseg predict` says which card applies."""

from __future__ import annotations

import hashlib
import json

import nibabel as nib
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.checkpoint import save_checkpoint
from covseg.cli import app
from covseg.core.registry import create_model
from covseg.data.intensity import Normalisation
from covseg.data.split import make_split
from covseg.files import write_json
from covseg.onnx import read_metadata
from covseg.onnx.card import FILE_HASH_LABEL, card_file_hash, card_path, graph_sha256
from covseg.training.config import TrainConfig
from tests.tiny_model import tiny_model_installed

runner = CliRunner()
SIDE = 32
NARROW = {"base_channels": 8}
VALIDATION = {"what": "best epoch 3, chosen on these slices (optimistic)", "slices": 2, "epoch": 3,
              "metrics": {"miou": 0.41, "lesion_miou": 0.2, "iou/ground-glass": 0.3},
              "intervals": {"miou": [0.35, 0.47], "lesion_miou": None, "iou/ground-glass": [0.1, 0.5]}}
TEST = {"what": "best.pt (epoch 3), scored once after training", "source": "split.json test_ids",
        "slices": 4, "metrics": {"miou": 0.38, "pixel_accuracy": 0.91},
        "intervals": {"miou": [0.3, 0.45], "pixel_accuracy": [0.88, 0.93]}}


def make_run(folder, summary: dict) -> None:
    """A finished run folder: config.json, split.json (6 training / 2 validation), best.pt, summary.json.

    Its unet is narrow (``base_channels=8``, recorded in config.json and best.pt as training does):
    the card's text does not depend on the width, and the full width takes many times as long to save and
    export."""
    folder.mkdir(parents=True)
    TrainConfig.from_recipe("unet", dataset="phantom", dataset_options={"count": 8, "size": SIDE},
                            image_size=SIDE, epochs=3, model_options=NARROW).save(folder / "config.json")
    ids = [f"phantom_{index:03d}" for index in range(8)]
    make_split(ids, val_fraction=0.25, seed=0).save(folder / "split.json")
    torch.manual_seed(0)
    save_checkpoint({
        "model_name": "unet", "num_classes": 4, "in_channels": 3, "class_names": list(CLASS_NAMES),
        "normalisation": Normalisation().to_dict(), "image_size": SIDE,
        "model_options": NARROW, "state_dict": create_model("unet", **NARROW).state_dict(), "epoch": 3,
        "metrics": {"miou": 0.41},
        "run_dir": str(folder),
    }, folder / "best.pt")
    write_json(folder / "summary.json", {"best_epoch": 3, "epochs_run": 3, "best_metrics": {"miou": 0.41},
                                         **summary})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The run with validation and test blocks, exported with `covseg export`."""
    folder = tmp_path_factory.mktemp("card")
    run = folder / "runs" / "unet" / "20250101-000000"
    make_run(run, {"validation": VALIDATION, "test": TEST})
    out = folder / "exports" / "unet-run.onnx"
    result = runner.invoke(app, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote its model card {card_path(out)}" in " ".join(result.output.split())
    return run, out


def test_the_card_beside_the_file_and_in_it_agree_and_are_tied_to_it(exported):
    run, out = exported
    card = card_path(out)
    assert card.name == "unet-run.MODEL.md"
    text = card.read_text()
    assert card_file_hash(text) == hashlib.sha256(out.read_bytes()).hexdigest()
    metadata = read_metadata(out)
    embedded = metadata.extra["model_card"]
    file_line = next(line for line in text.splitlines() if FILE_HASH_LABEL in line)
    assert text == embedded + file_line + "\n"  # the same card; only MODEL.md holds the file's hash
    assert metadata.extra["graph_sha256"] == graph_sha256(out.read_bytes())
    assert f"`{metadata.extra['graph_sha256']}`" in embedded
    for heading in ("## Model", "## Training", "## Validation metrics", "## Test metrics", "## Intended use",
                    "## Known limitations", "## Identity"):
        assert heading in text
    assert "- Architecture: unet: " in text and "family unet" in text and "M parameters" in text
    assert f"- Run: {run}" in text
    assert "- Split: 6 training / 2 validation slices (seed 0)." in text
    assert "- Recipe: default: adamw lr 0.001" in text and "image size 32" in text
    assert "- Epochs: 3 of 3; weights of epoch 3 (best validation epoch 3)" in text
    assert "| miou | 0.4100 | 0.3500 – 0.4700 |" in text
    assert "| lesion_miou | 0.2000 | — |" in text
    assert "`test`: best.pt (epoch 3), scored once after training; split.json test_ids; 4 slices" in text
    assert "| miou | 0.3800 | 0.3000 – 0.4500 |" in text
    assert "| pixel_accuracy | 0.9100 | 0.8800 – 0.9300 |" in text
    assert "Research only" in text and "Not a medical device" in text
    assert "Trained on 6 slices from one data set" in text
    assert "No held-out test score" not in text


def test_a_run_without_a_test_score_says_so_and_an_untrained_export_too(tmp_path, monkeypatch):
    run = tmp_path / "run"
    make_run(run, {})
    out = tmp_path / "m.onnx"
    assert runner.invoke(app, ["export", str(run), "--out", str(out)]).exit_code == 0
    text = card_path(out).read_text()
    assert "## Test metrics\n\nNo held-out test score.\n" in text
    assert "Best validation epoch 3 (the slices that chose it: optimistic); no intervals recorded." in text
    assert "- No held-out test score: its accuracy on unseen scans is unknown." in text
    # An untrained export of a model name. The tiny test model (a real plugin): the card's text is the same
    # for any model, and an untrained full-width unet takes many times as long to export.
    untrained = tmp_path / "untrained.onnx"
    with tiny_model_installed(tmp_path, monkeypatch) as model:
        made = runner.invoke(app, ["export", model, "--out", str(untrained), "--image-size", "32"])
        assert made.exit_code == 0, made.output
        text = card_path(untrained).read_text()
        assert "UNTRAINED: random weights" in text and "- Untrained: its labels mean nothing." in text
        again = runner.invoke(app, ["export", model, "--out", str(tmp_path / "other.onnx")])
        assert again.exit_code == 0
        card_path(untrained).unlink()
        (tmp_path / "untrained.onnx").unlink()
        card_path(untrained).write_text("someone's notes\n")
        refused = runner.invoke(app, ["export", model, "--out", str(untrained)])
    assert refused.exit_code == 2 and "untrained.MODEL.md exists; pass --overwrite" in refused.output
    assert not untrained.exists()


def predict(model, volume, out):
    return runner.invoke(app, ["predict", str(model), str(volume), "--out", str(out), "--overlays", "none"])


def test_predict_names_the_card_that_applies(exported, tmp_path):
    _, out = exported
    volume = tmp_path / "scan.nii.gz"
    hu = np.full((SIDE, SIDE, 2), -1000, np.int16)
    hu[8:20, 8:20] = -500
    nib.save(nib.Nifti1Image(hu, np.diag([-0.7, 0.7, 5.0, 1.0])), volume)
    model = tmp_path / "model.onnx"
    model.write_bytes(out.read_bytes())
    card_path(model).write_bytes(card_path(out).read_bytes())
    beside = predict(model, volume, tmp_path / "a")
    assert beside.exit_code == 0, beside.output
    text = " ".join(beside.output.split())
    assert f"model card: {card_path(model)} (sha256 of model.onnx matches" in text
    report = json.loads((tmp_path / "a" / "scan" / "report.json").read_text())
    assert report["model_card"].startswith(f"{card_path(model)} (sha256 of model.onnx matches")
    # A card that belongs to another file: said, and the card in the metadata applies.
    card_path(model).write_text(card_path(out).read_text().replace(card_file_hash(card_path(out).read_text()),
                                                                   "0" * 64))
    foreign = " ".join(predict(model, volume, tmp_path / "b").output.split())
    assert f"{card_path(model)} does not describe model.onnx: it states sha256 000000000000..." in foreign
    assert f"model card: in the metadata of {model} (graph sha256 matches" in foreign
    card_path(model).unlink()
    embedded = " ".join(predict(model, volume, tmp_path / "c").output.split())
    assert f"model card: in the metadata of {model} (graph sha256 matches" in embedded
    assert "warning" not in embedded
    # New weights under the old metadata: the card no longer describes the graph.
    proto = onnx.load(model)
    first = proto.graph.initializer[0]
    first.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(first) + 1.0, first.name))
    onnx.save(proto, model)
    changed = " ".join(predict(model, volume, tmp_path / "d").output.split())
    assert "for ANOTHER graph" in changed and "the weights were changed after export" in changed
