"""Training learns: on the phantom lesion IoU climbs far above its start; on the 80 real MedSeg
slices the model beats predicting background everywhere. CPU, tiny images, the default recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from covseg.core.registry import create_model
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.data.split import Split
from covseg.evaluation.evaluate import evaluate_model
from covseg.evaluation.metrics import compute_metrics
from covseg.training import TrainConfig, train

PHANTOM_EPOCHS = 4
MEDSEG_EPOCHS = 3


def epoch_records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_unet_learns_the_phantom_lesions(tmp_path):
    options = {"count": "24", "size": "64"}
    config = TrainConfig.from_recipe(
        "unet",
        dataset_options=options,
        epochs=PHANTOM_EPOCHS,
        batch_size=4,
        workers=0,
        device="cpu",
        checkpoint_every=PHANTOM_EPOCHS,
        out=str(tmp_path),
    )
    run = train(config)
    records = epoch_records(run)
    # The start: the same initial weights (train seeds torch, then builds the model), untrained.
    torch.manual_seed(config.seed)
    untrained = create_model("unet")
    validation = SliceDataset(
        load_slices(None, None, options), Split.load(run / "split.json").val_ids, Normalisation()
    )
    _, start = evaluate_model(untrained, DataLoader(validation, batch_size=4), torch.device("cpu"), 4)
    best = max(record["lesion_miou"] for record in records)
    assert start["lesion_miou"] < 0.05
    assert best > 0.15 and best > start["lesion_miou"] + 0.1, (start["lesion_miou"], best)
    assert records[-1]["train_loss"] < 0.8 * records[0]["train_loss"]


@pytest.mark.slow
def test_unet_beats_all_background_on_the_real_medseg_slices(tmp_path, medseg100_dir):
    config = TrainConfig.from_recipe(
        "unet",
        data=str(medseg100_dir),
        image_size=48,
        epochs=MEDSEG_EPOCHS,
        workers=0,
        device="cpu",
        checkpoint_every=MEDSEG_EPOCHS,
        out=str(tmp_path),
    )
    run = train(config)
    split = Split.load(run / "split.json")
    assert len(split.train_ids) == 64 and len(split.val_ids) == 16
    # All-background baseline on the same validation slices at the same size.
    validation = SliceDataset(load_slices(None, medseg100_dir), split.val_ids, Normalisation(), image_size=48)
    confusion = np.zeros((4, 4), dtype=np.int64)
    for _, mask in validation:
        confusion[:, 0] += np.bincount(mask.flatten().numpy(), minlength=4)  # every pixel predicted 0
    baseline = compute_metrics(confusion)["miou"]
    best = max(record["miou"] for record in epoch_records(run))
    assert best > baseline + 0.05, (best, baseline)
