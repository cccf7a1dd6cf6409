"""The candidate parts of a stronger recipe (issue 10.4), each off by default: augmentation preset,
foreground oversampling, weight EMA, poly schedule and SGD momentum; the recipes stay as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from covseg.checkpoint import load_checkpoint
from covseg.core.errors import CovsegError
from covseg.data.augment import AugmentationConfig, build_augmentation
from covseg.training import TrainConfig, TrainingInterrupted, train
from covseg.training import api as training_api
from covseg.training.ema import WeightAverage
from covseg.training.optim import build_optimizer, build_scheduler
from covseg.training.sampling import ForegroundSampler, epoch_sampler, lesion_indices
from tests.test_train_runs import CtrlCInEpoch, read_records, tiny_config

# ---- the recipes are unchanged ---------------------------------------------------------------------
OLD_AUGMENTATION = {"hflip_p": 0.5, "noise_p": 0.5, "noise_std_range": [0.01, 0.03], "rotation_degrees": 15.0,
                    "rotation_p": 0.5, "vflip_p": 0.5}
COMMON = {"channels_last": None, "checkpoint_every": 1, "compile": False, "data": None, "dataset": None,
          "dataset_options": {}, "deterministic": False, "device": "auto", "fold": None, "folds": None,
          "image_size": None, "in_channels": 3, "intensity": None, "loggers": [], "model": "unet",
          "model_options": {}, "normalisation": None, "num_classes": 4, "out": "runs", "precision": None,
          "pretrained": False, "seed": 0, "class_names": None, "split_file": None, "test_data": None,
          "test_dataset": None, "test_dataset_options": {}, "test_fraction": None, "val_fraction": 0.2,
          "batch_size": 8}
BEFORE = {  # TrainConfig.from_recipe("unet", recipe=NAME).to_dict() before these settings existed
    "reference": {**COMMON, "class_weighting": "none", "epochs": 1500, "loss": "cross-entropy", "lr": 1e-05,
                  "optimizer": "adam", "recalibrate_bn": False, "recipe": "reference", "scheduler": "none",
                  "warmup_epochs": 0, "weight_decay": 0.0},
    "default": {**COMMON, "class_weighting": "sqrt-inverse-frequency", "epochs": 150,
                "loss": "cross-entropy+dice", "lr": 0.001, "optimizer": "adamw", "recalibrate_bn": True,
                "recipe": "default", "scheduler": "warmup-cosine", "warmup_epochs": 5,
                "weight_decay": 0.0001},
}
NEW_OFF = {"foreground_oversampling": 0.0, "ema_decay": None, "momentum": 0.9}


@pytest.mark.parametrize("recipe", ["reference", "default"])
def test_recipes_resolve_as_before_with_every_new_part_off(recipe):
    record = TrainConfig.from_recipe("unet", recipe=recipe).to_dict()
    augmentation = record.pop("augmentation")
    for key in ("covseg_version", "workers", "sources"):
        record.pop(key)
    assert {key: record.pop(key) for key in NEW_OFF} == NEW_OFF
    assert record == BEFORE[recipe]
    assert {key: augmentation[key] for key in OLD_AUGMENTATION} == OLD_AUGMENTATION
    added = {key for key in augmentation if key.endswith("_p")} - OLD_AUGMENTATION.keys()
    assert added and all(augmentation[key] == 0.0 for key in added)
    # The reference pipeline holds exactly the study's four transforms.
    pipeline = build_augmentation(AugmentationConfig.from_dict(augmentation), seed=0)
    assert [type(item).__name__ for item in pipeline.transforms] == [
        "Rotate", "HorizontalFlip", "VerticalFlip", "GaussNoise"]


# ---- augmentation ----------------------------------------------------------------------------------
def blocks_mask(size: int = 64) -> np.ndarray:
    """Labels 0-3 in large blocks, so nearest and linear interpolation agree away from edges."""
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[8:30, 8:30], mask[34:56, 10:28], mask[12:52, 38:54] = 1, 2, 3
    return mask


OFF = {"rotation_p": 0.0, "hflip_p": 0.0, "vflip_p": 0.0, "noise_p": 0.0}
GEOMETRY = {
    "scale": {"scale_range": (0.7, 1.4), "scale_p": 1.0},
    "elastic": {"elastic_p": 1.0},
    "rotation": {"rotation_degrees": 180.0, "rotation_p": 1.0},
}
INTENSITY = {
    "gamma": {"gamma_range": (0.7, 1.5), "gamma_p": 1.0},
    "brightness_contrast": {"brightness_limit": 0.3, "contrast_limit": 0.5, "brightness_contrast_p": 1.0},
    "blur": {"blur_sigma_range": (0.5, 1.0), "blur_p": 1.0},
    "noise": {"noise_std_range": (0.2, 0.3), "noise_p": 1.0},
}


@pytest.mark.parametrize("name", list(GEOMETRY))
def test_geometric_transforms_move_image_and_mask_together_and_keep_labels(name):
    mask = blocks_mask()
    image = (mask.astype(np.float32) / 3)[..., None]  # the image is the mask scaled: (H, W, 1) in [0, 1]
    pipeline = build_augmentation(AugmentationConfig(**{**OFF, **GEOMETRY[name]}), seed=3)
    changed = 0
    for index in range(6):
        pipeline.set_random_seed(index)
        out = pipeline(image=image, mask=mask)
        assert out["image"].shape == image.shape and out["mask"].shape == mask.shape
        assert set(np.unique(out["mask"])) <= {0, 1, 2, 3}
        # Linear image and nearest-neighbour mask differ only along label edges.
        agree = np.mean(np.rint(out["image"][..., 0] * 3) == out["mask"])
        assert agree > 0.9, (name, agree)
        changed += not np.array_equal(out["mask"], mask)
    assert changed >= 3


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_transforms_touch_the_image_only_and_stay_in_range(name):
    mask = blocks_mask()
    image = np.random.default_rng(0).uniform(0, 1, (64, 64, 1)).astype(np.float32)
    pipeline = build_augmentation(AugmentationConfig(**{**OFF, **INTENSITY[name]}), seed=3)
    for index in range(4):
        pipeline.set_random_seed(index)
        out = pipeline(image=image.copy(), mask=mask.copy())
        assert np.array_equal(out["mask"], mask)
        assert out["image"].shape == image.shape and out["image"].dtype == np.float32
        assert out["image"].min() >= 0.0 and out["image"].max() <= 1.0
        assert not np.allclose(out["image"], image)


def test_nnunet_preset_round_trips_through_config_json(tmp_path):
    config = TrainConfig.from_recipe("unet", augmentation="nnunet")
    assert AugmentationConfig.from_dict(config.augmentation) == AugmentationConfig.nnunet()
    assert config.augmentation["scale_range"] == [0.7, 1.4] and config.augmentation["gamma_p"] == 0.3
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json").augmentation == config.augmentation
    # A record of an older covseg (the four reference transforms only) means what it meant.
    assert AugmentationConfig.from_dict(OLD_AUGMENTATION) == AugmentationConfig.reference()
    unknown = r"'nnUnet' is not an augmentation preset \(presets: reference, nnunet\)"
    with pytest.raises(CovsegError, match=unknown):
        TrainConfig.from_recipe("unet", augmentation="nnUnet")
    with pytest.raises(CovsegError, match=r"scale_range=\(1.4, 0.7\): expected \(low, high\)"):
        AugmentationConfig(scale_range=(1.4, 0.7))


# ---- foreground oversampling -----------------------------------------------------------------------
def test_foreground_oversampling_gives_the_share_deterministically():
    masks = [np.zeros((4, 4), np.uint8) for _ in range(100)]
    for index in range(0, 100, 10):
        masks[index][1, 1] = 2
    lesion = lesion_indices(masks)
    assert lesion == list(range(0, 100, 10))
    sampler = ForegroundSampler(100, lesion, 0.5, seed=4)
    sampler.set_epoch(3)
    indices = sampler.epoch_indices()
    assert len(indices) == len(sampler) == 100
    # 50 forced lesion samples, plus those the uniform half draws (at most all 10 lesion slices).
    assert 50 <= sum(index in lesion for index in indices) <= 60
    again = ForegroundSampler(100, lesion, 0.5, seed=4)
    again.set_epoch(3)
    assert again.epoch_indices() == indices
    again.set_epoch(4)
    assert again.epoch_indices() != indices
    assert all(index in lesion for index in ForegroundSampler(100, lesion, 1.0).epoch_indices())
    # Two processes: disjoint halves of the same draw, as DistributedSampler deals them.
    shards = []
    for rank in (0, 1):
        shard = ForegroundSampler(100, lesion, 0.5, num_replicas=2, rank=rank, seed=4)
        shard.set_epoch(3)
        shards.append(list(shard))
    assert len(shards[0]) == len(shards[1]) == 50
    assert shards[0] + shards[1] != indices and sorted(shards[0] + shards[1]) == sorted(indices)
    # Off: torch's own sampler, so runs without oversampling are unchanged.
    assert type(epoch_sampler(100, masks, 0.0, 1, 0, 4)) is DistributedSampler
    with pytest.raises(CovsegError, match="none of the 3 training slices holds a lesion pixel"):
        epoch_sampler(3, [np.zeros((2, 2))] * 3, 0.3, 1, 0, 0)


# ---- EMA of the weights ----------------------------------------------------------------------------
def test_ema_equals_the_closed_form_average():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.8)
    history = []
    for _ in range(4):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        history.append([parameter.detach().clone() for parameter in model.parameters()])
        average.update(model)
    # The first update copies; then ema = d * ema + (1 - d) * w: w1 d^3 + (1-d)(w2 d^2 + w3 d + w4).
    d = 0.8
    for position, parameter in enumerate(average.module.parameters()):
        w = [step[position] for step in history]
        expected = w[0] * d**3 + (1 - d) * (w[1] * d**2 + w[2] * d + w[3])
        torch.testing.assert_close(parameter, expected)
    state = average.state_dict()
    restored = WeightAverage(torch.nn.Linear(3, 2), decay=0.8)
    restored.load_state_dict(state)
    assert int(restored.averaged.n_averaged) == 4


def test_best_pt_holds_the_averaged_weights(tmp_path):
    run = train(tiny_config(tmp_path, epochs=1, ema_decay=0.5))
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == last["epoch"] == 1
    ema = last["training_state"]["ema"]
    assert int(ema["n_averaged"]) == 2  # two steps of 4 slices
    for name, tensor in best["state_dict"].items():
        assert torch.equal(tensor, ema[f"module.{name}"]), name
    assert any(not torch.equal(tensor, last["state_dict"][name])  # last.pt resumes the trained weights
               for name, tensor in best["state_dict"].items() if tensor.is_floating_point())


@pytest.mark.slow
def test_every_part_together_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    parts = {"ema_decay": 0.9, "foreground_oversampling": 0.5, "augmentation": "nnunet", "optimizer": "sgd",
             "momentum": 0.99, "scheduler": "poly", "lr": 0.01}
    straight = train(tiny_config(tmp_path / "straight", **parts))
    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch(epoch=2, batches=1))
    with pytest.raises(TrainingInterrupted) as stopped:
        train(tiny_config(tmp_path / "killed", **parts))
    monkeypatch.undo()
    run = stopped.value.run_dir
    train(TrainConfig.load(run / "config.json"), resume=run)
    for name in ("last.pt", "best.pt"):
        expected, actual = load_checkpoint(straight / name), load_checkpoint(run / name)
        for key, tensor in expected["state_dict"].items():
            assert torch.equal(tensor, actual["state_dict"][key]), (name, key)
    ema = load_checkpoint(run / "last.pt")["training_state"]["ema"]
    for key, tensor in load_checkpoint(straight / "last.pt")["training_state"]["ema"].items():
        assert torch.equal(tensor, ema[key]), key
    assert read_records(run) == read_records(straight)
    recorded = json.loads((run / "config.json").read_text())
    recorded_parts = (recorded["ema_decay"], recorded["foreground_oversampling"], recorded["momentum"])
    assert recorded_parts == (0.9, 0.5, 0.99)


# ---- schedules and optimisers ----------------------------------------------------------------------
def test_poly_schedule_and_nesterov_momentum():
    model = torch.nn.Conv2d(3, 4, 3)
    optimizer = build_optimizer("sgd", model, lr=0.01, weight_decay=3e-5, momentum=0.99)
    assert type(optimizer) is torch.optim.SGD
    assert all(group["momentum"] == 0.99 and group["nesterov"] for group in optimizer.param_groups)
    scheduler = build_scheduler("poly", optimizer, total_steps=10, warmup_steps=3)  # poly: no warm-up
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.01 * (1 - step / 10) ** 0.9 for step in range(10)]
    assert rates == pytest.approx(expected)
    config = TrainConfig.from_recipe("unet", scheduler="poly")
    assert config.warmup_epochs == 0
    with pytest.raises(CovsegError, match=r"--warmup-epochs 2 has no effect with --scheduler poly"):
        TrainConfig.from_recipe("unet", scheduler="poly", warmup_epochs=2)
    with pytest.raises(CovsegError, match=r"--momentum 0\.99 has no effect with --optimizer adamw"):
        TrainConfig.from_recipe("unet", momentum=0.99)
