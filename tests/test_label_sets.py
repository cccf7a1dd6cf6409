"""Data sets beyond MedSeg's four classes: declared label sets, 2-class training, eval --merge."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from covseg.checkpoint import load_checkpoint, model_from_checkpoint
from covseg.cli import app
from covseg.core.entries import MEDSEG_LABELS, LabelSet
from covseg.core.errors import CovsegError
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation
from covseg.data.labels import parse_labels
from covseg.data.loading import load_slices
from covseg.evaluation.merge import plan_merge
from covseg.evaluation.metrics import compute_metrics

runner = CliRunner()
BINARY = {"mask_values": "0,255", "labels": "background,infection"}
PHANTOM = {"count": "6", "size": "64", "seed": "3"}
COMMON = ["--image-size", "32", "--epochs", "1", "--batch-size", "2", "--workers", "0", "--device", "cpu",
          "--model-option", "base_channels=4"]


def options(values: dict[str, str]) -> list[str]:
    return [item for key, value in values.items() for item in ("--dataset-option", f"{key}={value}")]


def one_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def write_binary_folder(folder: Path, count: int = 6, size: int = 32) -> None:
    """8-bit slices with 0/255 infection masks, as Zenodo-style binary sets store them."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    generator = np.random.default_rng(0)
    for index in range(count):
        mask = np.zeros((size, size), np.uint8)
        mask[4 + index:14 + index, 8:20] = 255
        image = generator.integers(0, 80, (size, size)).astype(np.uint8)
        image[mask > 0] = 200
        Image.fromarray(image).save(folder / "images" / f"s{index}.png")
        Image.fromarray(mask).save(folder / "masks" / f"s{index}.png")


def write_binary_phantom(folder: Path) -> None:
    """The phantom slices of PHANTOM (HU, NPY) with every lesion class marked 255: a binary set."""
    slices = load_slices("phantom", None, PHANTOM)
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for slice_id, image, mask in zip(slices.ids, slices.images, slices.masks, strict=True):
        np.save(folder / "images" / f"{slice_id}.npy", image.astype(np.float32))
        binary = np.where(mask > 0, 255, 0).astype(np.uint8)
        Image.fromarray(binary).save(folder / "masks" / f"{slice_id}.png")


def test_a_label_set_has_background_first_and_distinct_names():
    assert MEDSEG_LABELS.names == ("background", "ground-glass", "consolidation", "effusion")
    assert parse_labels("background, infection").names == ("background", "infection")
    assert len(LabelSet(("background", "left-lung", "right-lung", "infection"))) == 4
    with pytest.raises(CovsegError, match="option labels=infection: a label set has 2 to 256 classes"):
        parse_labels("infection")
    with pytest.raises(CovsegError, match=r"the first label .* must be 'background', not 'infection'"):
        parse_labels("infection,background")
    with pytest.raises(CovsegError, match="label 'infection' is named twice"):
        parse_labels("background,infection,infection")
    with pytest.raises(CovsegError, match="label name 'a b' is not a name"):
        parse_labels("background,a b")


def test_class_names_covseg_derives_or_that_fold_together_are_refused_in_labels(tmp_path):
    """A class called all-lesions (or lung, whose lung_ml column summary.csv has) would overwrite a
    summary.csv column; names equal but for case would share a file on macOS and a spreadsheet key."""
    reserved = ("option labels=background,all-lesions: label 'all-lesions' takes a name covseg reports "
                "under itself (all-lesions, voxel, lung, left_lung, right_lung); rename it (e.g. "
                "labels=background,infection)")
    with pytest.raises(CovsegError) as refused:
        parse_labels("background,all-lesions")
    assert str(refused.value) == reserved
    with pytest.raises(CovsegError, match="label 'Lung' takes a name covseg reports under itself"):
        parse_labels("background,Lung")
    with pytest.raises(CovsegError, match=r"label 'GGO' is the same name as 'ggo' \(case aside\)"):
        parse_labels("background,ggo,GGO")
    with pytest.raises(CovsegError, match="label name 'a b' is not a name"):
        parse_labels("background,a b,a_b")
    write_binary_folder(tmp_path, count=2)
    result = runner.invoke(app, ["data", "info", str(tmp_path), "--dataset-option", "mask_values=0,255",
                                 "--dataset-option", "labels=background,all-lesions"])
    assert one_line(result) == f"error: {reserved}"


def test_folder_declares_labels_and_refuses_values_beyond_them(tmp_path):
    write_binary_folder(tmp_path, count=2)
    slices = load_slices("folder", tmp_path, BINARY)
    assert slices.labels.names == ("background", "infection")
    assert set(np.unique(slices.masks[0]).tolist()) == {0, 1}
    # mask_values must list one stored value per class: 0,255 against the four default classes would
    # make every lesion ground-glass
    with pytest.raises(CovsegError, match=r"option mask_values=0,255 maps 2 stored values, but the data "
                       r"set's classes are 4 .*--dataset-option labels=background,NAME"):
        load_slices("folder", tmp_path, {"mask_values": "0,255"})
    with pytest.raises(CovsegError, match="maps 2 stored values, but labels= declares 3 classes"):
        load_slices("folder", tmp_path, {"mask_values": "0,255", "labels": "background,a,b"})
    stored = np.zeros((32, 32), np.uint8)
    stored[3, 3] = 1
    Image.fromarray(stored).save(tmp_path / "masks" / "s0.png")
    stored[3, 4] = 2
    Image.fromarray(stored).save(tmp_path / "masks" / "s1.png")
    with pytest.raises(CovsegError) as refused:
        load_slices("folder", tmp_path, {"labels": "background,infection"})
    assert str(refused.value) == (
        f"{tmp_path / 'masks' / 's1.png'}: label values 2 are outside the class set (0 background, "
        "1 infection); declare other classes with --dataset-option labels=background,NAME,...")


def test_data_info_counts_the_declared_classes(tmp_path):
    write_binary_folder(tmp_path, count=2)
    result = runner.invoke(app, ["data", "info", str(tmp_path), *options(BINARY)])
    assert result.exit_code == 0, result.output
    assert "infection" in result.output and "ground-glass" not in result.output


def test_compute_metrics_names_per_class_values_by_the_label_set():
    confusion = np.array([[50, 10], [5, 35]])
    metrics = compute_metrics(confusion, class_names=("background", "infection"))
    assert metrics["iou/infection"] == pytest.approx(35 / (35 + 10 + 5))
    assert metrics["dice/infection"] == pytest.approx(70 / (70 + 10 + 5))
    assert metrics["lesion_miou"] == pytest.approx(35 / 50)
    assert metrics["miou"] == pytest.approx((50 / 65 + 35 / 50) / 2)
    assert "iou/class-1" in compute_metrics(confusion)  # no names known: neutral ones, never MedSeg's
    with pytest.raises(CovsegError, match="3 class names for a 2-class confusion"):
        compute_metrics(confusion, class_names=("background", "a", "b"))


def test_plan_merge_maps_model_classes_onto_the_data_labels():
    model, data = MEDSEG_LABELS.names, ("background", "infection")
    assert plan_merge(model, model, [], "data") is None
    merge = plan_merge(model, data, ["ground-glass,consolidation,effusion=infection"], "data")
    assert merge.mapping == (0, 1, 1, 1)
    assert merge.describe() == "ground-glass+consolidation+effusion -> infection"
    assert merge.relabel(torch.tensor([[0, 1, 2, 3]])).tolist() == [[0, 1, 1, 1]]
    # effusion counted as background: the data does not mark it
    assert plan_merge(model, data, ["ground-glass,consolidation=infection", "effusion=background"],
                      "data").mapping == (0, 1, 1, 0)
    refusals = {
        (): "the model predicts 4 classes (background, ground-glass, consolidation, effusion) but data is "
            "labelled with 2 (background, infection): scoring them class by class would be meaningless; "
            "score it with --merge ground-glass,consolidation,effusion=infection",
        ("ground-glass,consolidation=infection",): "model class 'effusion' is not a label of data "
            "(background, infection); merge it too, e.g. --merge effusion=TARGET",
        ("ggo=infection",): "--merge ggo=infection: the model has no class 'ggo' (its classes: background, "
            "ground-glass, consolidation, effusion)",
        ("ground-glass=lesion",): "--merge ...=lesion: 'lesion' is not a label of data "
            "(background, infection)",
        ("ground-glass=infection", "ground-glass=background"): "--merge: model class 'ground-glass' is "
            "merged twice (into 'infection' and 'background')",
        ("ground-glass",): "--merge 'ground-glass' is not SOURCE[,SOURCE...]=TARGET with class names "
            "(e.g. --merge ground-glass,consolidation,effusion=infection)",
    }
    for specs, message in refusals.items():
        with pytest.raises(CovsegError) as refused:
            plan_merge(model, data, list(specs), "data")
        assert str(refused.value) == message


def test_a_binary_folder_trains_a_two_class_model_named_by_its_labels(tmp_path):
    data = tmp_path / "binary"
    write_binary_folder(data)
    wrong = runner.invoke(app, ["train", "unet", "--data", str(data), *options(BINARY), *COMMON,
                                "--num-classes", "4", "--out", str(tmp_path / "refused")])
    assert one_line(wrong) == (f"error: --num-classes 4: {data} is labelled with 2 classes (0 background, "
                               "1 infection); drop it (covseg takes the number from the data) or declare "
                               "the data's labels")
    assert not (tmp_path / "refused").exists()

    result = runner.invoke(app, ["train", "unet", "--data", str(data), *options(BINARY), *COMMON,
                                 "--out", str(tmp_path / "runs")])
    assert result.exit_code == 0, result.output
    assert "infection" in result.output and "ground-glass" not in result.output
    run = next((tmp_path / "runs" / "unet").iterdir())
    config = json.loads((run / "config.json").read_text())
    assert config["num_classes"] == 2 and config["class_names"] == ["background", "infection"]
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["num_classes"] == 2 and checkpoint["class_names"] == ["background", "infection"]
    assert {"iou/infection", "dice/infection"} <= set(checkpoint["metrics"])
    report = tmp_path / "eval.json"
    evaluated = runner.invoke(app, ["eval", str(run), "--device", "cpu", "--json", str(report)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "infection" in evaluated.output
    assert json.loads(report.read_text())["class_names"] == ["background", "infection"]


def test_eval_merge_scores_a_four_class_model_on_binary_masks(tmp_path):
    trained = runner.invoke(app, ["train", "unet", "--dataset", "phantom", *options(PHANTOM), *COMMON,
                                  "--out", str(tmp_path / "runs")])
    assert trained.exit_code == 0, trained.output
    run = next((tmp_path / "runs" / "unet").iterdir())
    binary = tmp_path / "binary"
    write_binary_phantom(binary)
    evaluate = ["eval", str(run), "--data", str(binary), *options(BINARY), "--device", "cpu"]

    refused = runner.invoke(app, evaluate)
    assert one_line(refused) == (
        "error: the model predicts 4 classes (background, ground-glass, consolidation, effusion) but "
        f"{binary} is labelled with 2 (background, infection): scoring them class by class would be "
        "meaningless; score it with --merge ground-glass,consolidation,effusion=infection")

    report = tmp_path / "merged.json"
    result = runner.invoke(app, [*evaluate, "--merge", "ground-glass,consolidation,effusion=infection",
                                 "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "ground-glass+consolidation+effusion->infection" in "".join(result.output.split())
    record = json.loads(report.read_text())
    assert record["class_names"] == ["background", "infection"]
    assert record["model_class_names"] == ["background", "ground-glass", "consolidation", "effusion"]

    # By hand: the model's argmax, then every lesion class relabelled 1, counted with numpy.
    model, checkpoint = model_from_checkpoint(run / "best.pt")
    slices = load_slices("folder", binary, BINARY)
    ids = record["slice_ids"]  # the run's validation slices, found by id in the binary copy
    assert 0 < len(ids) < len(slices.ids)
    dataset = SliceDataset(slices, ids, Normalisation.from_dict(checkpoint["normalisation"]), image_size=32)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    truth = np.stack([dataset[i][1].numpy() for i in range(len(dataset))]).ravel()
    model.eval()
    with torch.no_grad():
        predicted = model(images).argmax(dim=1).numpy().ravel()
    merged = np.array([0, 1, 1, 1])[predicted]
    confusion = np.bincount(2 * truth + merged, minlength=4).reshape(2, 2)
    np.testing.assert_array_equal(np.array(record["confusion"]), confusion)
    true_positive = np.diag(confusion).astype(float)
    false_positive = confusion.sum(axis=0) - true_positive
    false_negative = confusion.sum(axis=1) - true_positive
    iou = true_positive / (true_positive + false_positive + false_negative)
    dice = 2 * true_positive / (2 * true_positive + false_positive + false_negative)
    metrics = record["metrics"]
    assert metrics["iou/background"] == pytest.approx(iou[0])
    assert metrics["iou/infection"] == pytest.approx(iou[1])
    assert metrics["dice/infection"] == pytest.approx(dice[1])
    assert metrics["miou"] == pytest.approx(iou.mean())
    assert metrics["lesion_miou"] == pytest.approx(iou[1])
    assert metrics["pixel_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    assert not any(key.endswith(("ground-glass", "consolidation", "effusion")) for key in metrics)
