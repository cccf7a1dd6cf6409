"""`evaluate_model` on synthetic tensors and `covseg eval` on a tiny hand-built run.

The runs hold a narrow unet (``base_channels=8``: the same code at a fraction of the compute and
checkpoint size); what is scored is the run's own checkpoint, whatever its width.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from sklearn import metrics as skm
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.checkpoint import model_from_checkpoint, save_checkpoint
from covseg.cli import app
from covseg.commands.evaluate import png_names
from covseg.core.errors import CovsegError
from covseg.core.registry import create_model
from covseg.data.dataset import SliceDataset
from covseg.data.fingerprint import slice_hash
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.data.split import Split, make_split
from covseg.devices import resolve_device
from covseg.evaluation.confusion import confusion_matrix
from covseg.evaluation.evaluate import evaluate_model, predict_labels
from covseg.evaluation.metrics import compute_metrics
from covseg.training.config import TrainConfig
from covseg.visualize import MIN_CAPTION_WIDTH, captioned, overlay, to_gray_uint8

runner = CliRunner()


class LabelFromIntensity(nn.Module):
    """Predicts class round(3 * channel 0): a model whose output is known exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.modes_seen: list[bool] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.modes_seen.append(self.training)
        labels = (images[:, 0] * 3).round().long().clamp(0, 3)
        return nn.functional.one_hot(labels, 4).permute(0, 3, 1, 2).float()


def synthetic_set(count: int = 10, size: int = 16, seed: int = 0):
    """Images whose channel 0 encodes a label that agrees with the mask on ~70% of pixels."""
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, 4, (count, size, size), generator=generator)
    guesses = torch.randint(0, 4, (count, size, size), generator=generator)
    keep = torch.rand((count, size, size), generator=generator) < 0.7
    predicted = torch.where(keep, masks, guesses)
    images = (predicted.float() / 3).unsqueeze(1).repeat(1, 3, 1, 1)
    return images, masks, predicted


def test_evaluate_model_scores_the_whole_set_in_eval_mode_and_restores_the_mode():
    images, masks, predicted = synthetic_set()
    model = LabelFromIntensity().train()
    seen = []
    loader = DataLoader(TensorDataset(images, masks), batch_size=3)
    confusion, metrics = evaluate_model(model, loader, torch.device("cpu"), 4,
                                        on_batch=lambda i, m, p: seen.append(p.clone()))
    expected = confusion_matrix(predicted, masks, 4).numpy()
    np.testing.assert_array_equal(confusion, expected)
    assert metrics == compute_metrics(expected)
    assert 0.3 < metrics["miou"] < 0.9
    assert model.modes_seen == [False] * 4 and model.training  # eval inside, train mode restored
    assert torch.equal(torch.cat(seen), predicted)


def test_nan_logits_never_win_the_argmax():
    logits = torch.zeros(1, 4, 2, 2)
    logits[:, 2] = float("nan")
    logits[:, 1, 0, 0] = 5.0
    labels = predict_labels(logits)
    assert labels.tolist() == [[[1, 0], [0, 0]]]
    assert predict_labels(torch.full((1, 4, 2, 2), float("nan"))).eq(0).all()


def test_evaluate_model_refuses_logits_of_the_wrong_class_count():
    images, masks, _ = synthetic_set(count=2)
    loader = DataLoader(TensorDataset(images, masks), batch_size=2)
    with pytest.raises(CovsegError, match=r"logits of shape \(2, 4, 16, 16\), expected \(N, 3, H, W\)"):
        evaluate_model(LabelFromIntensity(), loader, torch.device("cpu"), 3)


def _evaluate_shard(rank: int, world_size: int, folder: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank,
                            world_size=world_size)
    try:
        images, masks, _ = synthetic_set()
        shard = TensorDataset(images[rank::world_size], masks[rank::world_size])
        confusion, metrics = evaluate_model(LabelFromIntensity(), DataLoader(shard, batch_size=2),
                                            torch.device("cpu"), 4)
        np.save(f"{folder}/confusion-{rank}.npy", confusion)
        np.save(f"{folder}/miou-{rank}.npy", np.array(metrics["miou"]))
    finally:
        dist.destroy_process_group()


def test_under_torch_distributed_every_rank_gets_the_metrics_of_the_whole_set(tmp_path):
    _, masks, predicted = synthetic_set()
    expected = confusion_matrix(predicted, masks, 4).numpy()
    # fork: the workers need no re-import of this module, which keeps the test to a second or two.
    mp.start_processes(_evaluate_shard, args=(2, str(tmp_path)), nprocs=2, start_method="fork")
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(tmp_path / f"confusion-{rank}.npy"), expected)
        miou = float(np.load(tmp_path / f"miou-{rank}.npy"))
        assert miou == pytest.approx(compute_metrics(expected)["miou"])


# ---------------------------------------------------------------------------------------------
# covseg eval on a run folder built by hand, as `covseg train` lays it out (interfaces.md)

PHANTOM_OPTIONS = {"count": "6", "size": "64"}
SIDE = 64
MODEL_OPTIONS = {"base_channels": 8}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """runs/unet/<time>/ with config.json, split.json (3 validation slices) and an untrained best.pt
    (a narrow unet; config.json and best.pt record its width, as training writes them)."""
    run = tmp_path_factory.mktemp("runs") / "unet" / "20250101-000000"
    run.mkdir(parents=True)
    TrainConfig.from_recipe("unet", dataset="phantom", dataset_options=dict(PHANTOM_OPTIONS),
                            model_options=dict(MODEL_OPTIONS), image_size=SIDE,
                            epochs=1).save(run / "config.json")
    slices = load_slices("phantom", None, PHANTOM_OPTIONS)
    make_split(slices.ids, val_fraction=0.5, seed=0).save(run / "split.json")
    torch.manual_seed(0)
    model = create_model("unet", **MODEL_OPTIONS)
    save_checkpoint({
        "model_name": "unet", "num_classes": 4, "in_channels": 3, "class_names": list(CLASS_NAMES),
        "model_options": dict(MODEL_OPTIONS),
        "normalisation": Normalisation().to_dict(), "image_size": SIDE, "state_dict": model.state_dict(),
        "epoch": 1, "metrics": {}, "run_dir": str(run),
    }, run / "best.pt")
    return run


@pytest.fixture(scope="module")
def run_model(run_dir) -> nn.Module:
    """The run's best.pt as a model, loaded once for the independent computations."""
    return model_from_checkpoint(run_dir / "best.pt")[0]


def independent_confusion(model: nn.Module, ids: list[str], options=PHANTOM_OPTIONS) -> np.ndarray:
    """The model's confusion on these slices, by plain forward passes and scikit-learn."""
    dataset = SliceDataset(load_slices("phantom", None, options), ids, Normalisation(), image_size=SIDE)
    images = torch.stack([dataset[i][0] for i in range(len(ids))])
    masks = torch.stack([dataset[i][1] for i in range(len(ids))])
    with torch.no_grad():
        predictions = model(images).argmax(dim=1)
    return skm.confusion_matrix(masks.numpy().ravel(), predictions.numpy().ravel(), labels=[0, 1, 2, 3])


def one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def test_eval_of_a_run_scores_its_validation_split_and_writes_overlays(run_dir, run_model, tmp_path):
    pictures, report = tmp_path / "pictures", tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", "--batch-size", "2",
                                 "--save-predictions", str(pictures), "--json", str(report)])
    assert result.exit_code == 0, result.output
    val_ids = Split.load(run_dir / "split.json").val_ids
    record = json.loads(report.read_text())
    assert record["split"] == "validation split" and record["slices"] == len(val_ids) == 3
    confusion = np.array(record["confusion"])
    np.testing.assert_array_equal(confusion, independent_confusion(run_model, val_ids))
    expected = compute_metrics(confusion)
    for key, value in record["metrics"].items():
        assert (value is None and np.isnan(expected[key])) or value == pytest.approx(expected[key])
    for word in ("miou", "pixel_accuracy", "ground-glass", "effusion (3)", "wrote 3 overlay PNG(s)"):
        assert word in result.output

    assert sorted(path.name for path in pictures.iterdir()) == [f"{slice_id}.png" for slice_id in val_ids]
    dataset = SliceDataset(load_slices("phantom", None, PHANTOM_OPTIONS), val_ids, Normalisation(),
                           image_size=SIDE)
    for index, slice_id in enumerate(val_ids):
        picture = np.asarray(Image.open(pictures / f"{slice_id}.png").convert("RGB"))
        # image | truth | prediction with 2-px gaps, over a caption (slice, model, legend)
        assert picture.shape[0] > SIDE and picture.shape[1] == max(3 * SIDE + 2 * 2, MIN_CAPTION_WIDTH)
        image, mask = dataset[index]
        image_hwc = image.permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(picture[:SIDE, :SIDE], to_gray_uint8(image_hwc))
        np.testing.assert_array_equal(picture[:SIDE, SIDE + 2:2 * SIDE + 2], overlay(image_hwc, mask.numpy()))
        blank = np.zeros((SIDE, 3 * SIDE + 2 * 2, 3), np.uint8)
        caption = captioned(blank, [f"slice {slice_id}", "image | truth | prediction of unet"], CLASS_NAMES)
        np.testing.assert_array_equal(picture[SIDE:], caption[SIDE:])  # slice, model and legend
    assert (np.array(record["confusion"])[1:].sum()) > 0  # the validation slices hold lesions to look at


def test_eval_tta_scores_the_softmax_averaged_over_the_flips(run_dir, run_model, tmp_path):
    report = tmp_path / "metrics.json"
    result = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", "--tta", "flips",
                                 "--json", str(report)])
    assert result.exit_code == 0, result.output
    assert "test-time augmentation: flips (4 passes" in " ".join(result.output.split())
    record = json.loads(report.read_text())
    assert record["tta"] == "flips"
    val_ids = Split.load(run_dir / "split.json").val_ids
    slices = load_slices("phantom", None, PHANTOM_OPTIONS)
    dataset = SliceDataset(slices, val_ids, Normalisation(), image_size=SIDE)
    images = torch.stack([dataset[i][0] for i in range(len(val_ids))])
    masks = torch.stack([dataset[i][1] for i in range(len(val_ids))])
    with torch.no_grad():  # by hand: the slice, mirrored left-right, top-bottom and both
        mean = sum(torch.flip(torch.softmax(run_model(torch.flip(images, dims)), 1), dims) if dims
                   else torch.softmax(run_model(images), 1) for dims in ((), (3,), (2,), (2, 3))) / 4
    predicted = mean.argmax(1).numpy().ravel()
    expected = skm.confusion_matrix(masks.numpy().ravel(), predicted, labels=[0, 1, 2, 3])
    np.testing.assert_array_equal(np.array(record["confusion"]), expected)
    # (This untrained unet predicts one class everywhere, flipped or not: tests/test_predict_tta.py
    # checks with a mirror-asymmetric model that the flips change exactly the labels they should.)


def test_eval_split_choices_and_an_existing_pictures_folder(run_dir, run_model, tmp_path):
    report = tmp_path / "all.json"
    result = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", "--split", "train",
                                 "--json", str(report)])
    assert result.exit_code == 0, result.output
    train_ids = Split.load(run_dir / "split.json").train_ids
    np.testing.assert_array_equal(np.array(json.loads(report.read_text())["confusion"]),
                                  independent_confusion(run_model, train_ids))

    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("keep me")
    refused = runner.invoke(app, ["eval", str(run_dir), "--save-predictions", str(tmp_path / "taken")])
    assert one_line_error(refused) == (f"error: --save-predictions {tmp_path / 'taken'} exists and is not "
                                       "empty; add --overwrite or choose another folder")
    allowed = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", "--split", "all",
                                  "--save-predictions", str(tmp_path / "taken"), "--overwrite"])
    assert allowed.exit_code == 0, allowed.output
    assert len(list((tmp_path / "taken").glob("phantom_*.png"))) == 6
    assert (tmp_path / "taken" / "notes.txt").read_text() == "keep me"


def test_eval_of_a_loose_checkpoint_needs_data_and_then_scores_all_of_it(run_dir, run_model, tmp_path):
    loose = tmp_path / "model.pt"
    shutil.copy(run_dir / "best.pt", loose)
    without = runner.invoke(app, ["eval", str(loose), "--device", "cpu"])
    assert one_line_error(without) == (f"error: {loose} is not inside a run folder (no config.json beside "
                                       "it); give --dataset or --data to say what to evaluate on")
    options = ["--dataset-option", "count=4", "--dataset-option", "size=64"]
    with_split = runner.invoke(app, ["eval", str(loose), "--dataset", "phantom", *options, "--split", "val"])
    assert one_line_error(with_split) == (f"error: --split val: {loose} has no run split to select by id; "
                                          "evaluate all slices of --dataset/--data (drop --split)")

    report = tmp_path / "phantom.json"
    result = runner.invoke(app, ["eval", str(loose), "--dataset", "phantom", *options, "--device", "cpu",
                                 "--json", str(report)])
    assert result.exit_code == 0, result.output
    record = json.loads(report.read_text())
    assert record["slices"] == 4 and record["split"] == "all slices"
    ids = [f"phantom_{index:04d}" for index in range(1, 5)]
    np.testing.assert_array_equal(np.array(record["confusion"]),
                                  independent_confusion(run_model, ids, {"count": "4", "size": "64"}))


def test_eval_bad_input_gets_one_line_each(run_dir, tmp_path, monkeypatch):
    (tmp_path / "notes").mkdir()
    assert one_line_error(runner.invoke(app, ["eval", str(tmp_path / "notes")])) == (
        f"error: {tmp_path / 'notes'} is not a covseg run folder (it has no config.json); "
        "give a run folder or a .pt checkpoint")
    assert one_line_error(runner.invoke(app, ["eval", str(tmp_path / "nowhere")])).startswith(
        f"error: {tmp_path / 'nowhere'} does not exist")

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    shutil.copy(run_dir / "config.json", unfinished / "config.json")
    (unfinished / "last.pt").write_bytes(b"")
    assert one_line_error(runner.invoke(app, ["eval", str(unfinished)])) == (
        f"error: run {unfinished} has no best.pt (no validated epoch was saved); "
        f"{unfinished / 'last.pt'} exists, give it to use the last epoch")

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((run_dir / "best.pt").read_bytes()[:5000])
    assert one_line_error(runner.invoke(app, ["eval", str(corrupt)])).startswith(
        f"error: {corrupt} is not a readable covseg checkpoint")

    misfit = tmp_path / "misfit.pt"
    save_checkpoint({"model_name": "unet", "num_classes": 4, "state_dict": {"head.weight": torch.zeros(1)},
                     "model_options": dict(MODEL_OPTIONS), "normalisation": Normalisation().to_dict(),
                     "image_size": SIDE}, misfit)
    assert one_line_error(runner.invoke(app, ["eval", str(misfit)])).startswith(
        f"error: {misfit}: its weights do not fit its model")

    foreign = tmp_path / "foreign.pt"
    save_checkpoint({"model_name": "no-such-net", "num_classes": 4, "state_dict": {}}, foreign)
    assert one_line_error(runner.invoke(app, ["eval", str(foreign)])).startswith(
        f"error: {foreign}: unknown model 'no-such-net'.")

    bad_option = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", "--dataset-option", "count"])
    assert one_line_error(bad_option) == "error: --dataset-option 'count' is not key=value (e.g. count=40)"

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert one_line_error(runner.invoke(app, ["eval", str(run_dir), "--device", "cuda"])) == (
        "error: --device cuda: CUDA is not available on this machine")


TRAINING_WARNING = ("warning: {scored} of the {count} evaluated slices were used for training (same ids): "
                    "the scores are optimistic, not a validation score")


def warnings_of(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("warning:")]


def test_scoring_training_slices_warns_whichever_way_they_are_chosen(run_dir):
    """--split all/train of the run's own data and --data/--dataset with the same ids: one mechanism."""
    train_ids = Split.load(run_dir / "split.json").train_ids
    assert len(train_ids) == 3
    expected = {
        ("--split", "all"): TRAINING_WARNING.format(scored=3, count=6),
        ("--split", "train"): TRAINING_WARNING.format(scored=3, count=3),
        ("--split", "val"): None,
        ("--dataset", "phantom", "--dataset-option", "count=6", "--dataset-option", "size=64",
         "--split", "all"): TRAINING_WARNING.format(scored=3, count=6),
        ("--dataset", "phantom", "--dataset-option", "count=6", "--dataset-option", "size=64"): None,
    }
    for options, warning in expected.items():
        result = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu", *options])
        assert result.exit_code == 0, result.output
        assert warnings_of(result) == ([warning] if warning else []), (options, result.output)
    # From Python (benchmarks/tta_effect.py calls it), a misspelt subset is refused, never scored
    # as the training slices.
    from covseg.evaluation.trained import load_evaluation_data, load_trained_model

    with pytest.raises(CovsegError, match=r"^--split tset: expected one of val, train, test, all$"):
        load_evaluation_data(load_trained_model(run_dir), split="tset")


def test_per_class_table_fits_80_columns_with_each_interval_under_its_value(run_dir):
    """At 80 columns the per-class table puts each interval under its value, cutting nothing."""
    narrow = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu"], env={"COLUMNS": "80"})
    assert narrow.exit_code == 0, narrow.output
    assert "…" not in narrow.output and max(map(len, narrow.output.splitlines())) <= 80
    header = next(line for line in narrow.output.splitlines() if "class" in line and "iou (CI)" in line)
    assert "dice (CI)" in header
    wide = runner.invoke(app, ["eval", str(run_dir), "--device", "cpu"], env={"COLUMNS": "200"})
    intervals = {cell.strip() for line in wide.output.splitlines() for cell in line.split("│")
                 if cell.strip()[:1].isdigit() and "-" in cell}
    assert intervals and intervals <= {cell.strip() for line in narrow.output.splitlines()
                                       for cell in line.split("│")}


def write_slice_folder(folder: Path, seed: int, names: dict[str, str] | None = None) -> None:
    """The phantom's slices (``seed``) as float32 NPY images and PNG masks, each ``id`` saved as
    ``names.get(id, id)``: a renamed copy of the same pixels."""
    slices = load_slices("phantom", None, {**PHANTOM_OPTIONS, "seed": str(seed)})
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    for slice_id, image, mask in zip(slices.ids, slices.images, slices.masks, strict=True):
        name = (names or {}).get(slice_id, slice_id)
        np.save(folder / "images" / f"{name}.npy", image.astype(np.float32))
        Image.fromarray(mask).save(folder / "masks" / f"{name}.png")


def test_a_renamed_copy_of_the_training_data_is_found_by_its_pixels(tmp_path):
    """split.json records a hash of each slice's pixels; eval matches by id and by hash."""
    data = tmp_path / "data"
    write_slice_folder(data, seed=0)
    trained = runner.invoke(app, ["train", "unet", "--data", str(data), "--val-fraction", "0.5",
                                  "--epochs", "1", "--image-size", "32", "--batch-size", "2", "--workers",
                                  "0", "--device", "cpu", "--model-option", "base_channels=4",
                                  "--out", str(tmp_path / "runs")])
    assert trained.exit_code == 0, trained.output
    run = next((tmp_path / "runs" / "unet").iterdir())
    split = Split.load(run / "split.json")
    read = load_slices("folder", data, {})
    assert split.slice_hashes == {name: slice_hash(image) for name, image in zip(read.ids, read.images,
                                                                                 strict=True)}
    train_ids = sorted(split.train_ids)
    assert len(train_ids) == 3 and len(set(split.slice_hashes.values())) == 6

    def warnings_on(folder: Path) -> list[str]:
        result = runner.invoke(app, ["eval", str(run), "--data", str(folder), "--device", "cpu"])
        assert result.exit_code == 0, result.output
        return warnings_of(result)

    renamed = tmp_path / "renamed"
    write_slice_folder(renamed, seed=0, names={name: f"x_{name}" for name in read.ids})
    assert warnings_on(renamed) == [TRAINING_WARNING.format(scored=3, count=6).replace(
        "same ids", "same pixels under other ids")]
    mixed = tmp_path / "mixed"  # one training slice keeps its name, the rest are renamed
    write_slice_folder(mixed, seed=0, names={name: f"x_{name}" for name in read.ids if name != train_ids[0]})
    assert warnings_on(mixed) == [TRAINING_WARNING.format(scored=3, count=6).replace(
        "same ids", "1 by the same ids, 2 by the same pixels under other ids")]
    other = tmp_path / "other"  # another data set under other names: held out indeed
    write_slice_folder(other, seed=5, names={name: f"x_{name}" for name in read.ids})
    assert warnings_on(other) == []
    record = json.loads((run / "split.json").read_text())
    del record["slice_hashes"]  # a split.json from before covseg recorded hashes: the id rule alone
    (run / "split.json").write_text(json.dumps(record))
    assert warnings_on(renamed) == []
    assert warnings_on(mixed) == [TRAINING_WARNING.format(scored=1, count=6)]


def test_eval_options_are_refused_before_any_data_is_read(run_dir, tmp_path, monkeypatch):
    import covseg.evaluation.trained

    reads: list[object] = []
    monkeypatch.setattr(covseg.evaluation.trained, "load_slices", lambda *args: reads.append(args))
    data = ["--dataset", "phantom", "--split", "all", "--device", "cpu"]
    (tmp_path / "a-folder").mkdir()
    refusals = {
        ("--merge", "foo"): "error: --merge 'foo' is not SOURCE[,SOURCE...]=TARGET with class names "
                            "(e.g. --merge ground-glass,consolidation,effusion=infection)",
        ("--merge", "ggo=infection"): "error: --merge ggo=infection: the model has no class 'ggo' "
                                      "(its classes: background, ground-glass, consolidation, effusion)",
        ("--merge", "effusion=a", "--merge", "effusion=b"): "error: --merge: model class 'effusion' is "
                                                            "merged twice (into 'a' and 'b')",
        ("--dataset-option", "count"): "error: --dataset-option 'count' is not key=value (e.g. count=40)",
        ("--json", str(tmp_path / "a-folder")): f"error: --json {tmp_path / 'a-folder'} is a folder; give a "
                                                "file name",
    }
    for options, line in refusals.items():
        assert one_line_error(runner.invoke(app, ["eval", str(run_dir), *data, *options])) == line
    assert reads == []


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(CovsegError, match=r"^--device CPU: expected auto, cpu, cuda or cuda:N$"):
        resolve_device("CPU")  # spelled as predict takes it: one syntax for every command
    with pytest.raises(CovsegError, match=r"^--device cuda:0: CUDA is not available on this machine$"):
        resolve_device("cuda:0")
    with pytest.raises(CovsegError, match=r"^--device gpu: expected auto, cpu, cuda or cuda:N$"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(CovsegError, match=r"^--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")


def test_png_names_are_safe_and_unique():
    assert png_names(["a/b:3", "a_b_3", "..", "ok-1.x"]) == ["a_b_3.png", "a_b_3-2.png", "slice.png",
                                                              "ok-1.x.png"]
