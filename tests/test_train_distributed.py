"""`torchrun -m covseg train` with 2 CPU processes (gloo) against 1 process.

What can be equal, and is checked equal:
- the data: the 2 processes' batches of a step are together exactly the 1-process batch of that
  step (one DistributedSampler permutation for both, split by rank);
- validation: the metrics the 2-process run logged (each rank scores its half of the validation
  slices, evaluate_model sums the confusion matrices) equal a 1-process evaluation of the very
  checkpoint it saved.
What can only be close: the training loss. DDP averages gradients exactly, but batch norm
normalises each process's 1-slice batch by its own statistics, not the 2-slice batch's, so the
two trajectories differ slightly (they would be equal only for a model without batch norm).

Both runs train a narrow unet (``base_channels=8``: the same code at a fraction of the compute and
checkpoint size; the comparison does not depend on the width).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation
from covseg.data.loading import load_slices
from covseg.data.split import Split
from covseg.evaluation.evaluate import evaluate_model
from covseg.evaluation.trained import load_trained_model
from covseg.training import TrainConfig, train
from covseg.training.distributed import DistributedContext
from covseg.training.loaders import build_training_data, choose_split

OPTIONS = {"count": "8", "size": "32"}
NARROW_UNET = {"base_channels": 8}
ARGS = [
    "--epochs",
    "1",
    "--batch-size",
    "2",
    "--workers",
    "0",
    "--device",
    "cpu",
    "--dataset-option",
    "count=8",
    "--dataset-option",
    "size=32",
]


def test_two_processes_see_together_the_batches_one_process_sees():
    config = TrainConfig.from_recipe("unet", dataset_options=OPTIONS, batch_size=2, workers=0, device="cpu")
    slices = load_slices(None, None, OPTIONS)
    split = choose_split(config, slices)

    def batches(rank: int, world_size: int) -> list[list[int]]:
        context = DistributedContext(rank, world_size, rank, torch.device("cpu"))
        data = build_training_data(config, slices, split, context)
        data.set_epoch(3)
        return [list(indices) for indices in data.train_loader.batch_sampler]

    single, first, second = batches(0, 1), batches(0, 2), batches(1, 2)
    assert len(single) == len(first) == len(second) == 3
    assert [sorted(a + b) for a, b in zip(first, second, strict=True)] == [sorted(s) for s in single]


@pytest.mark.slow
def test_two_process_ddp_run_matches_one_process(tmp_path):
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "covseg",
        "train",
        "unet",
        "--model-option",
        "base_channels=8",
        *ARGS,
        "--out",
        str(tmp_path / "ddp"),
    ]
    process = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stdout[-2000:] + process.stderr[-2000:]
    (run,) = list((tmp_path / "ddp" / "unet").iterdir())  # one run folder: only rank 0 writes
    assert process.stdout.count("Training unet") == 1  # and only rank 0 prints
    summary = json.loads((run / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["epochs_run"] == 1
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]

    # The same checkpoint, scored by one process over all validation slices.
    trained = load_trained_model(run)
    split = Split.load(run / "split.json")
    slices = load_slices(None, None, OPTIONS)
    dataset = SliceDataset(
        slices, split.val_ids, Normalisation.from_dict(trained.checkpoint["normalisation"])
    )
    _, metrics = evaluate_model(trained.model, DataLoader(dataset, batch_size=1), torch.device("cpu"), 4)
    logged = {key: record[key] for key in metrics}
    assert logged == {
        key: None if math.isnan(value) else pytest.approx(value, abs=1e-12) for key, value in metrics.items()
    }  # NaN is written as null

    # One process, same config: same data per step, loss close but not equal (batch norm).
    config = TrainConfig.from_recipe(
        "unet",
        model_options=dict(NARROW_UNET),
        dataset_options=OPTIONS,
        epochs=1,
        batch_size=2,
        workers=0,
        device="cpu",
        out=str(tmp_path / "single"),
    )
    single = train(config)
    (single_record,) = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert single_record["train_loss"] == pytest.approx(record["train_loss"], rel=0.05)
    assert Split.load(single / "split.json") == split


@pytest.mark.slow
def test_one_slice_per_process_on_a_model_with_batch_norm_over_1x1_is_refused_before_any_file(tmp_path):
    """The README's torchrun example with batch 8 on 8 GPUs is one slice per process. On CUDA,
    SyncBatchNorm makes that train; gloo (the CPU) cannot synchronise batch norm, so covseg refuses,
    in one line, before the run folder exists (and every process stops: none waits for the others)."""
    deeplab = "deeplabv3-resnet50"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "300"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
               "covseg", "train", deeplab, *ARGS, "--image-size", "32", "--out", str(tmp_path / "ddp")]
    process = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert process.returncode != 0
    errors = [line for line in process.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(line == errors[0] for line in errors)
    assert errors[0] == (
        f"error: --batch-size 2 over 2 processes gives each one slice per step; {deeplab} has batch norm "
        "over a 1x1 map (model.classifier.0.convs.4.2), which cannot train on one slice per step, and gloo "
        "(the CPU) cannot synchronise batch norm across processes; use --batch-size 4 or more")
    assert "Traceback" not in process.stdout and not (tmp_path / "ddp").exists()
