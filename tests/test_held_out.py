"""Honest numbers: a held-out test set, bootstrap intervals and K-fold cross-validation with its ensemble.

A two-layer model (``tiny-net``, registered here) trains 1-2 epochs on 12 phantom slices of 32x32 on
the CPU, so every run takes seconds; the behaviour under test is covseg's, not the network's.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from covseg.benchmark.report import COLUMN, COLUMNS, Stat, format_stat
from covseg.cli import app
from covseg.core.registry import get_registry
from covseg.data.loading import load_slices
from covseg.data.split import Split, make_folds, read_split_file
from covseg.evaluation import bootstrap
from covseg.evaluation.evaluate import evaluate_slices
from covseg.evaluation.metrics import compute_metrics
from covseg.evaluation.scores import read_slice_confusions
from covseg.evaluation.trained import evaluation_loader, load_trained_model
from covseg.export import export_model, load_export_source
from covseg.files import json_safe
from covseg.onnx import OnnxSegmenter, read_metadata
from covseg.plugins import ModelEntry, hookimpl
from covseg.training import api as training_api
from covseg.training import held_out, loaders

cli = CliRunner(env={"COLUMNS": "200"})
PHANTOM = ["--dataset-option", "count=12", "--dataset-option", "size=32"]
TINY = [*PHANTOM, "--image-size", "32", "--batch-size", "2", "--workers", "0", "--device", "cpu"]
PHANTOM_OPTIONS = {"count": "12", "size": "32"}


class TinyNet(torch.nn.Module):
    """Conv, batch norm, ReLU, 1x1 conv: enough to train, recalibrate and export in a second."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(in_channels, 8, 3, padding=1),
                                        torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                        torch.nn.Conv2d(8, num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def build_tiny(num_classes: int = 4, in_channels: int = 3, pretrained: bool = False) -> torch.nn.Module:
    return TinyNet(num_classes, in_channels)


class TinyModels:
    @hookimpl
    def covseg_models(self):
        return [ModelEntry("tiny-net", build_tiny, "Conv-BN-ReLU-conv (test).", family="test")]


@pytest.fixture
def tiny_model():
    get_registry().register(TinyModels(), name="tiny-models", package="covseg-tests")
    yield
    get_registry.cache_clear()


def only_run(folder: Path, model: str = "tiny-net") -> Path:
    (run,) = [path for path in (folder / model).iterdir() if path.is_dir()]
    return run


def summary_of(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def evaluate_json(target: Path, path: Path, *args: str) -> dict:
    result = cli.invoke(app, ["eval", str(target), "--device", "cpu", "--json", str(path), *args])
    assert result.exit_code == 0, result.output
    return json.loads(path.read_text())


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return " ".join(result.output.split())


# ---- a held-out test set ----------------------------------------------------------------------------
def test_test_slices_reach_no_training_step_and_are_scored_once_with_best_pt(tmp_path, tiny_model,
                                                                               monkeypatch):
    datasets: list[list[str]] = []  # every dataset training builds: training, validation, recalibration
    original_dataset = loaders.SliceDataset

    class Spy(original_dataset):
        def __init__(self, slices, ids, *args, **kwargs):
            datasets.append(list(ids))
            super().__init__(slices, ids, *args, **kwargs)

    weighted: list[list[np.ndarray]] = []
    original_weights = training_api.class_weights_from_masks
    scored: list[int] = []
    original_scoring = held_out.evaluate_slices
    monkeypatch.setattr(loaders, "SliceDataset", Spy)
    monkeypatch.setattr(training_api, "class_weights_from_masks",
                        lambda masks, *args: weighted.append(masks) or original_weights(masks, *args))
    monkeypatch.setattr(held_out, "evaluate_slices",
                        lambda *args, **kwargs: scored.append(len(args[1].dataset)) or original_scoring(*args,
                                                                                                          **kwargs))
    result = cli.invoke(app, ["train", "tiny-net", *TINY, "--epochs", "2", "--test-fraction", "0.25",
                              "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    split = Split.load(run / "split.json")
    test = set(split.test_ids)
    assert len(test) == 3 and len(split.val_ids) == 2 and len(split.train_ids) == 7
    assert json.loads((run / "split.json").read_text())["test_fraction"] == 0.25
    assert len(datasets) == 3 and datasets[0] == split.train_ids and datasets[1] == split.val_ids
    assert all(not test & set(ids) for ids in datasets)
    slices = load_slices("phantom", None, PHANTOM_OPTIONS)
    test_masks = [mask for slice_id, mask in zip(slices.ids, slices.masks, strict=True) if slice_id in test]
    assert len(weighted) == 1 and len(weighted[0]) == 7
    assert not any(np.array_equal(mask, test_mask) for mask in weighted[0] for test_mask in test_masks)
    assert scored == [3]  # the test set is scored once, after training

    summary = summary_of(run)
    block = summary["test"]
    assert block["slices"] == 3 and block["epoch"] == summary["best_epoch"]
    assert block["source"] == "split.json test_ids"
    assert summary["validation"]["metrics"] == summary["best_metrics"]
    assert summary["validation"]["slices"] == 2 and summary["bootstrap"] == bootstrap.settings()
    for name, interval in block["intervals"].items():
        if interval is not None and block["metrics"][name] is not None:
            assert interval[0] <= block["metrics"][name] <= interval[1], name
    # `covseg eval RUN --split test` loads best.pt and gets the very numbers the run reported.
    record = evaluate_json(run, tmp_path / "test.json", "--split", "test")
    assert record["split"] == "test split" and record["slice_ids"] == split.test_ids
    assert record["metrics"] == block["metrics"] and record["intervals"] == block["intervals"]
    assert record["epoch"] == summary["best_epoch"]
    sets = read_slice_confusions(run / "slice_confusions.json")
    assert sets["test"][0] == split.test_ids and sets["test"][1].tolist() == record["slice_confusions"]
    assert sets["validation"][0] == split.val_ids
    assert json_safe(compute_metrics(sets["validation"][1].sum(0))) == summary["best_metrics"]
    assert "validation" in result.output and "95% CI" in result.output


def test_a_separate_test_set_and_the_ways_to_get_it_wrong(tmp_path, tiny_model):
    other = ["--test-dataset", "phantom", "--test-dataset-option", "seed=7",
             "--test-dataset-option", "count=4", "--test-dataset-option", "size=32"]
    result = cli.invoke(app, ["train", "tiny-net", *TINY, "--epochs", "1", *other, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path)
    summary = summary_of(run)
    assert summary["test"]["slices"] == 4 and summary["test"]["source"].startswith("--test-dataset phantom")
    assert Split.load(run / "split.json").test_ids == []
    record = evaluate_json(run, tmp_path / "test.json", "--split", "test")
    assert record["split"] == "test set (--test-data)" and record["metrics"] == summary["test"]["metrics"]

    same = ["--test-dataset", "phantom", "--test-dataset-option", "count=12",
            "--test-dataset-option", "size=32"]
    copied = cli.invoke(app, ["train", "tiny-net", *TINY, *same, "--out", str(tmp_path / "copied")])
    assert re.search(r"error: --test-dataset phantom: test slice '(\w+)' has the very pixels of "
                     r"training data slice '\1'; a test set must be unseen", one_line_error(copied))
    both = cli.invoke(app, ["train", "tiny-net", *TINY, *other, "--test-fraction", "0.2"])
    assert "error: --test-fraction 0.2 and --test-dataset phantom are two test sets; give one" \
        in one_line_error(both)
    loose = cli.invoke(app, ["train", "tiny-net", *TINY, "--test-dataset-option", "seed=3"])
    assert ("error: --test-dataset-option seed=3 has no effect without --test-data (a setting of the "
            "separate test set); drop it") in one_line_error(loose)
    fixed = cli.invoke(app, ["train", "tiny-net", *TINY, "--split-file", str(run / "split.json"),
                             "--test-fraction", "0.2"])
    assert "--test-fraction 0.2 has no effect with --split-file" in one_line_error(fixed)
    assert not (tmp_path / "copied").exists()
    no_test = cli.invoke(app, ["train", "tiny-net", *TINY, "--epochs", "1", "--out", str(tmp_path / "plain")])
    assert no_test.exit_code == 0, no_test.output
    plain = only_run(tmp_path / "plain")
    assert summary_of(plain)["test"] is None
    missing = cli.invoke(app, ["eval", str(plain), "--device", "cpu", "--split", "test"])
    assert "has no test set (it was trained without --test-fraction or --test-data)" \
        in one_line_error(missing)


# ---- cross-validation and the ensemble --------------------------------------------------------------
def test_cross_validation_scores_out_of_fold_and_ships_a_mean_softmax_ensemble(tmp_path, tiny_model):
    result = cli.invoke(app, ["train", "tiny-net", *TINY, "--epochs", "1", "--folds", "3",
                              "--test-fraction", "0.25", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    cv = only_run(tmp_path)
    assert {path.name for path in cv.iterdir()} == {
        "config.json", "split.json", "fold-0", "fold-1", "fold-2", "ensemble.json", "slice_confusions.json",
        "summary.json"}
    folds = read_split_file(cv / "split.json")
    assert len(folds.test_ids) == 3 and [len(fold) for fold in folds.folds] == [3, 3, 3]
    assert (f"Cross-validation of tiny-net: 3 folds of 3 slices each, 3 test slices held out of every fold "
            f"-> {cv}") in result.output
    config = json.loads((cv / "config.json").read_text())
    assert config["folds"] == 3 and config["fold"] is None and config["val_fraction"] is None
    summary = summary_of(cv)

    # Out of fold: each fold's best.pt predicts its own validation fold; their union is the CV score.
    union = []
    for index, fold in enumerate(folds.folds):
        run = cv / f"fold-{index}"
        split = Split.load(run / "split.json")
        assert split.val_ids == fold and split.test_ids == folds.test_ids and split.fold == index
        assert not set(split.train_ids) & (set(fold) | set(folds.test_ids))
        assert json.loads((run / "config.json").read_text())["fold"] == index
        member = load_trained_model(run, "cpu")
        slices = load_slices("phantom", None, PHANTOM_OPTIONS)
        loader, _ = evaluation_loader(slices, fold, member.normalisation, 32, 2, torch.device("cpu"))
        union.append(evaluate_slices(member.model, loader, torch.device("cpu"), 4))
    confusions = np.concatenate(union)
    assert summary["validation"]["slices"] == 9 and summary["kind"] == "cross-validation"
    assert json_safe(compute_metrics(confusions.sum(0))) == summary["validation"]["metrics"] \
        == summary["best_metrics"]
    assert summary["test"]["slices"] == 3 and summary["test"]["members"] == 3

    # The ensemble's probabilities are the mean of its members' softmax, in PyTorch and in ONNX.
    ensemble = load_trained_model(cv, "cpu")
    members = [load_trained_model(cv / f"fold-{index}" / "best.pt", "cpu").model for index in range(3)]
    images = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = torch.stack([torch.softmax(member(images), dim=1) for member in members]).mean(0)
        actual = torch.softmax(ensemble.model(images), dim=1)
    assert ensemble.members == 3 and ensemble.is_ensemble
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)
    exported = export_model(load_export_source(cv))
    onnx_logits = OnnxSegmenter(exported.model_bytes).logits(images.numpy())
    onnx_probabilities = torch.softmax(torch.from_numpy(onnx_logits), dim=1)
    torch.testing.assert_close(onnx_probabilities, expected, rtol=0, atol=1e-5)

    # covseg eval takes the folder: the ensemble's test score is the summary's.
    record = evaluate_json(cv, tmp_path / "ensemble.json")
    assert record["members"] == 3 and record["split"] == "test split"
    assert record["metrics"] == summary["test"]["metrics"]
    assert record["intervals"] == summary["test"]["intervals"]
    refused = cli.invoke(app, ["eval", str(cv), "--device", "cpu", "--split", "val"])
    assert "trained on every slice outside the test set" in one_line_error(refused)

    # covseg export writes one graph with one metadata entry; covseg predict runs it.
    onnx_path = tmp_path / "ensemble.onnx"
    exported_cli = cli.invoke(app, ["export", str(cv), "--out", str(onnx_path)])
    assert exported_cli.exit_code == 0, exported_cli.output
    metadata = read_metadata(onnx_path)
    assert json.loads(metadata.extra["ensemble"])["members"] == 3 and metadata.ensemble_members == 3
    volume = np.stack(load_slices("phantom", None, {"count": "2", "size": "32", "seed": "9"}).images, axis=-1)
    volume = volume.transpose(1, 0, 2).astype(np.float32)  # NIfTI slices are shown as raw[:, :, z].T
    nib.save(nib.Nifti1Image(volume, np.eye(4)), tmp_path / "case.nii.gz")
    predicted = cli.invoke(app, ["predict", str(onnx_path), str(tmp_path / "case.nii.gz"), "--out",
                                 str(tmp_path / "predicted"), "--device", "cpu"])
    assert predicted.exit_code == 0, predicted.output
    assert "ensemble of 3 models (mean softmax)" in " ".join(predicted.output.split())
    assert (tmp_path / "predicted" / "case").is_dir()


def test_a_stopped_cross_validation_resumes_fold_by_fold(tmp_path, tiny_model):
    args = ["train", "tiny-net", *TINY, "--epochs", "1", "--folds", "2", "--out", str(tmp_path)]
    assert cli.invoke(app, args).exit_code == 0
    cv = only_run(tmp_path)
    before = summary_of(cv)
    assert before["test"] is None
    for name in ("summary.json", "ensemble.json", "fold-1/summary.json"):
        (cv / name).unlink()
    unfinished = cli.invoke(app, ["eval", str(cv), "--device", "cpu", "--split", "all"])
    assert f"cross-validation {cv} has not finished" in one_line_error(unfinished)
    resumed = cli.invoke(app, ["train", "--resume", str(cv)])
    assert resumed.exit_code == 0, resumed.output
    output = " ".join(resumed.output.split())
    assert f"Fold 0: finished already ({cv / 'fold-0'})" in output and f"Resuming {cv / 'fold-1'}" in output
    after = summary_of(cv)
    assert after["validation"] == before["validation"] and (cv / "ensemble.json").is_file()


def test_a_cross_validation_is_not_resumed_to_fewer_epochs_than_its_folds_trained(tmp_path, tiny_model):
    args = ["train", "tiny-net", *TINY, "--epochs", "2", "--folds", "2", "--out", str(tmp_path)]
    assert cli.invoke(app, args).exit_code == 0
    cv = only_run(tmp_path)
    config = (cv / "config.json").read_bytes()
    fewer = cli.invoke(app, ["train", "--resume", str(cv), "--epochs", "1"])
    assert one_line_error(fewer) == f"error: --resume {cv} has trained 2 epochs; --epochs must be at least 2"
    assert (cv / "config.json").read_bytes() == config


def test_cross_validation_refuses_what_cannot_work_before_making_a_folder(tmp_path, tiny_model):
    too_big = cli.invoke(app, ["train", "tiny-net", *TINY, "--folds", "4", "--batch-size", "10",
                               "--out", str(tmp_path)])
    assert "error: --batch-size 10 is larger than the smallest fold's training set (9 slices)" \
        in one_line_error(too_big)
    many = cli.invoke(app, ["train", "tiny-net", *TINY, "--folds", "13", "--out", str(tmp_path)])
    assert "error: --folds 13: only 12 slice(s) outside the test set" in one_line_error(many)
    fraction = cli.invoke(app, ["train", "tiny-net", *TINY, "--folds", "2", "--val-fraction", "0.3"])
    assert "--val-fraction 0.3 has no effect with --folds 2 (each fold in turn is the validation set)" \
        in one_line_error(fraction)
    seen = cli.invoke(app, ["train", "tiny-net", *TINY, "--folds", "2", "--test-dataset", "phantom",
                            "--test-dataset-option", "count=2", "--test-dataset-option", "size=32",
                            "--out", str(tmp_path)])
    assert "has the very pixels of training data slice" in one_line_error(seen)
    folds_file = tmp_path / "folds.json"
    make_folds([f"phantom_{index:04d}" for index in range(1, 13)], 3).save(folds_file)
    unasked = cli.invoke(app, ["train", "tiny-net", *TINY, "--split-file", str(folds_file),
                               "--out", str(tmp_path)])
    assert (f"--split-file {folds_file} holds 3 cross-validation folds; add --folds 3"
            in one_line_error(unasked))
    other = cli.invoke(app, ["train", "tiny-net", *TINY, "--split-file", str(folds_file), "--folds", "2",
                             "--out", str(tmp_path)])
    assert f"--split-file {folds_file} holds 3 folds, not --folds 2" in one_line_error(other)
    assert not tmp_path.joinpath("tiny-net").exists()


# ---- the benchmark -----------------------------------------------------------------------------------
def markdown_cells(markdown: str, model: str) -> dict[str, str]:
    """Every results.md table's cells of ``model``'s row, by header (headers name their set)."""
    cells: dict[str, str] = {}
    headers: list[str] = []
    for line in markdown.splitlines():
        if not line.startswith("|"):
            headers = []
            continue
        row = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        if not headers:
            headers = row
        elif row[0] == model:
            cells.update(zip(headers, row, strict=True))
    return cells


def check_report(out: Path) -> tuple[dict, dict[str, str]]:
    """results.md == results.json == results.csv for every figure of every model; returns the entry."""
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    rows = {row["model"]: row for row in csv.DictReader((out / "results.csv").open())}
    (entry,) = results["models"]
    cells = markdown_cells(markdown, entry["model"])
    for column in COLUMNS:
        if column.source == "measure":
            continue
        mean, std = entry["mean"][column.key], entry["std"][column.key]
        interval = entry["interval"].get(column.key)
        stat = Stat(mean, std, len([seed for seed in entry["per_seed"] if seed[column.key] is not None]))
        if column.header in cells:
            assert cells[column.header] == format_stat(stat, column, interval), column.key
        row = rows[entry["model"]]
        assert (float(row[column.key]) if row[column.key] else None) == mean, column.key
        if interval is not None:
            assert [float(row[f"{column.key}_ci_low"]), float(row[f"{column.key}_ci_high"])] == interval
    assert {"Validation mIoU", "Test mIoU", "Test IoU effusion", "Validation Dice consolidation"} \
        <= set(cells)
    return entry, cells


def test_benchmark_reports_validation_and_test_apart_with_each_runs_numbers(tmp_path, tiny_model):
    out = tmp_path / "bench"
    result = cli.invoke(app, ["benchmark", "--models", "tiny-net", "--seeds", "0,1", *TINY, "--epochs", "1",
                              "--test-fraction", "0.25", "--latency-size", "0", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test mIoU" in result.output and "95% CI" in result.output
    entry, _ = check_report(out)
    split = Split.load(out / "split.json")
    assert len(split.test_ids) == 3 and json.loads((out / "results.json").read_text())["split"]["test"] == 3
    stacks = {"validation": [], "test": []}
    for seed in entry["per_seed"]:
        run = out / seed["run_dir"]
        summary = summary_of(run)
        assert Split.load(run / "split.json") == split  # one split, one test set, for every seed
        for name in stacks:
            for key, value in summary[name]["metrics"].items():
                if f"{name}/{key}" in COLUMN:  # results.json holds every figure results.md shows
                    assert seed[f"{name}/{key}"] == value, (name, key)
            stacks[name].append(read_slice_confusions(run / "slice_confusions.json")[name][1])
    for name, stack in stacks.items():  # the interval of the seed mean, from the runs' own files
        recomputed = bootstrap.bootstrap_intervals(np.stack(stack))
        assert entry["interval"][f"{name}/miou"] == list(recomputed["miou"])
        assert entry["interval"][f"{name}/iou/ground-glass"] == list(recomputed["iou/ground-glass"])
    assert "## Per class, test (held out)" in (out / "results.md").read_text()


def test_benchmark_with_folds_reports_out_of_fold_and_ensemble_test_figures(tmp_path, tiny_model):
    out = tmp_path / "bench"
    result = cli.invoke(app, ["benchmark", "--models", "tiny-net", *TINY, "--epochs", "1", "--folds", "2",
                              "--test-fraction", "0.25", "--latency-size", "32", "--out", str(out)])
    assert result.exit_code == 0, result.output
    entry, cells = check_report(out)
    (seed,) = entry["per_seed"]
    cv = out / seed["run_dir"]
    summary = summary_of(cv)
    assert seed["kind"] == "cross-validation" and summary["kind"] == "cross-validation"
    assert read_split_file(cv / "split.json") == read_split_file(out / "split.json")
    for name in ("validation", "test"):
        for key, value in summary[name]["metrics"].items():
            if f"{name}/{key}" in COLUMN:
                assert seed[f"{name}/{key}"] == value, (name, key)
                assert entry["interval"][f"{name}/{key}"] == summary[name]["intervals"][key], (name, key)
    validation = summary["validation"]
    assert cells["Validation mIoU"] == format_stat(Stat(validation["metrics"]["miou"], None, 1),
                                                   COLUMN["validation/miou"], validation["intervals"]["miou"])
    assert entry["measurements"]["latency_source"].endswith("fold-0")  # one model, not the ensemble
    notes = " ".join(json.loads((out / "results.json").read_text())["notes"])
    assert "out-of-fold" in notes and "ensemble of the fold models" in notes
    for name in ("montage.png", "miou_per_model.png", "validation_curves.png"):
        assert (out / name).stat().st_size > 0


def test_test_data_errors_name_the_test_data_and_its_own_option(tmp_path, tiny_model):
    from PIL import Image

    binary = tmp_path / "binary"
    for part in ("images", "masks"):
        (binary / part).mkdir(parents=True)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:16, 8:16] = 255
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(binary / "images" / "a.png")
    Image.fromarray(mask).save(binary / "masks" / "a.png")
    result = cli.invoke(app, ["train", "tiny-net", *TINY, "--test-data", str(binary),
                              "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.startswith("error:")] == [
        f"error: --test-data {binary} (the test data): {binary / 'masks' / 'a.png'}: mask values are 0/255 "
        "(a binary mask); map them to labels with --test-dataset-option mask_values=0,255 "
        "--test-dataset-option labels=background,NAME (e.g. background,infection)"]
    assert not (tmp_path / "runs").exists()
