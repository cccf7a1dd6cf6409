"""Training building blocks: recipes, TrainConfig, losses, schedules, run files, RNG state."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
from covseg_builtin.losses.modules import SoftDiceLoss
from torch.nn import functional as F

from covseg.checkpoint import load_checkpoint, save_checkpoint
from covseg.core.errors import CovsegError
from covseg.data.augment import AugmentationConfig
from covseg.runs import MetricsLog, create_run_dir
from covseg.training import RECIPES, TrainConfig
from covseg.training.loop import StepSettings, recalibrate_batch_norm
from covseg.training.losses import build_loss, class_weights_from_masks
from covseg.training.optim import build_optimizer, build_scheduler, lr_factor
from covseg.training.state import capture_rng_state, restore_rng_state


def test_reference_recipe_is_the_studys_protocol():
    config = TrainConfig.from_recipe("unet", recipe="reference")
    assert (config.batch_size, config.optimizer, config.lr, config.weight_decay) == (8, "adam", 1e-5, 0.0)
    assert (config.scheduler, config.warmup_epochs, config.epochs) == ("none", 0, 1500)
    assert (config.loss, config.class_weighting, config.val_fraction) == ("cross-entropy", "none", 0.2)
    assert config.recalibrate_bn is False  # the study validated with batch norm's running averages
    assert config.augmentation == AugmentationConfig.reference().to_dict()
    assert config.sources["lr"] == "recipe reference"
    optimizer = build_optimizer(config.optimizer, torch.nn.Conv2d(3, 4, 3), config.lr, config.weight_decay)
    assert type(optimizer) is torch.optim.Adam
    assert build_scheduler(config.scheduler, optimizer, 100, 0) is None


def test_default_recipe_is_the_field_defaults_and_explicit_overrides_win():
    config = TrainConfig.from_recipe("unet")
    assert RECIPES["default"].values == {}
    assert (config.optimizer, config.scheduler, config.loss, config.epochs, config.warmup_epochs) == (
        "adamw", "warmup-cosine", "cross-entropy+dice", 150, 5)
    overridden = TrainConfig.from_recipe("unet", recipe="reference", lr=3e-4, epochs=30)
    assert overridden.lr == 3e-4 and overridden.epochs == 30
    assert overridden.optimizer == "adam" and overridden.batch_size == 8  # the rest stays the recipe's
    assert overridden.sources["lr"] == "argument" and overridden.sources["optimizer"] == "recipe reference"
    short = TrainConfig.from_recipe("unet", epochs=30)
    assert short.warmup_epochs == 1  # warm-up follows the final epoch count
    assert TrainConfig(model="unet", epochs=30).warmup_epochs == 1  # built field by field too


def test_config_json_round_trip_and_one_line_errors(tmp_path):
    config = TrainConfig.from_recipe("fcn-resnet50", epochs=7, image_size=64, dataset_options={"count": "12"})
    config.save(tmp_path / "config.json")
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["covseg_version"] and data["sources"]["epochs"] == "argument"
    assert TrainConfig.load(tmp_path / "config.json") == config

    (tmp_path / "bad.json").write_text(json.dumps({**data, "learning_rate": 1}))
    with pytest.raises(CovsegError, match=r"unknown setting.*learning_rate"):
        TrainConfig.load(tmp_path / "bad.json")
    with pytest.raises(
        CovsegError, match=r"^--recipe fast: unknown recipe; choose one of reference, default$"
    ):
        TrainConfig.from_recipe("unet", recipe="fast")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("epochs", 0, "--epochs 0: must be between 1 and 100000"),
        ("epochs", 100_001, "--epochs 100001: must be between 1 and 100000"),
        ("batch_size", 0, "--batch-size 0: must be between 1 and 4096"),
        ("lr", -1.0, "--lr -1: must be more than 0 and at most 10"),
        ("lr", 0.0, "--lr 0: must be more than 0 and at most 10"),
        ("weight_decay", -0.1, "--weight-decay -0.1: must be between 0 and 1"),
        ("image_size", 16, "--image-size 16: must be between 32 and 4096 (the models down-sample 32x)"),
        ("image_size", 100_000, "--image-size 100000: must be between 32 and 4096"),
        ("val_fraction", 1.0, "--val-fraction 1: must be more than 0 and less than 1"),
        ("workers", -1, "--workers -1: must be between 0 and 256"),
        ("seed", -1, "--seed -1: must be between 0 and 4294967295"),
        ("checkpoint_every", 0, "--checkpoint-every 0: must be between 1 and 100000"),
        ("optimizer", "lamb", "--optimizer lamb: choose one of adam, adamw, sgd"),
        ("lr", math.inf, "TrainConfig: lr: inf is not a finite number"),
        ("lr", math.nan, "TrainConfig: lr: nan is not a finite number"),
        ("epochs", "8", "TrainConfig: epochs: expected an integer, got the string '8'"),
        ("epochs", 2.5, "TrainConfig: epochs: expected an integer, got 2.5"),
        ("dataset_options", ["count"], "TrainConfig: dataset_options: --dataset-option 'count' is not"),
        ("dataset_options", {"count": [8]}, "TrainConfig: dataset_options: option 'count' must be"),
        ("recalibrate_bn", "yes", "TrainConfig: recalibrate_bn: expected true or false, got the string"),
    ],
)
def test_invalid_settings_name_the_option(field, value, message):
    with pytest.raises(CovsegError) as error:
        TrainConfig.from_recipe("unet", **{field: value})
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_soft_dice_matches_a_hand_computation_and_ignores_background():
    target = torch.tensor([[[0, 1], [2, 3]]])
    logits = torch.zeros(1, 4, 2, 2)  # uniform probabilities 0.25 everywhere
    # Each lesion class: intersection 0.25, sum of probabilities 1.0, one true pixel -> 0.5/2.0.
    expected = 1 - (2 * 0.25 + 1) / (1.0 + 1 + 1)
    assert SoftDiceLoss(classes=[1, 2, 3])(logits, target).item() == pytest.approx(expected)
    perfect = F.one_hot(target, 4).permute(0, 3, 1, 2).float() * 100
    assert SoftDiceLoss(classes=[1, 2, 3])(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    # The rare class gets the same pull as the others: its Dice term has the same gradient scale.
    combined = build_loss("cross-entropy+dice", 4)
    ce_only = build_loss("cross-entropy", 4)
    logits = torch.zeros(1, 4, 2, 2, requires_grad=True)
    combined(logits, target).backward()
    assert logits.grad[0, 3, 1, 1] < 0  # raising the effusion logit on the effusion pixel lowers the loss
    assert combined(torch.zeros(1, 4, 2, 2), target) > ce_only(torch.zeros(1, 4, 2, 2), target)


def test_class_weights_follow_inverse_square_root_frequency():
    masks = [np.array([[0] * 90 + [1] * 9 + [3] * 1])]
    weights = class_weights_from_masks(masks, 4, "sqrt-inverse-frequency")
    frequency = np.array([0.9, 0.09, 0.0, 0.01])
    raw = np.array([1 / math.sqrt(0.9), 1 / math.sqrt(0.09), 1.0, 1 / math.sqrt(0.01)])
    np.testing.assert_allclose(weights.numpy(), raw / (raw * frequency).sum(), rtol=1e-6)
    assert class_weights_from_masks(masks, 4, "none") is None


def test_warmup_cosine_schedule_and_its_state_survive_weights_only_loading(tmp_path):
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine") == pytest.approx(0.0)
    assert lr_factor(55, 100, 10, "poly") == pytest.approx(0.5**0.9)
    model = torch.nn.Conv2d(3, 4, 3)
    optimizer = build_optimizer("adamw", model, 1e-3, 1e-4)
    assert [group["weight_decay"] for group in optimizer.param_groups] == [1e-4, 0.0]  # no decay on bias
    scheduler = build_scheduler("warmup-cosine", optimizer, 100, 10)
    for _ in range(30):
        optimizer.step()
        scheduler.step()
    save_checkpoint(
        {"scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()}, tmp_path / "s.pt"
    )
    restored = build_scheduler("warmup-cosine", build_optimizer("adamw", model, 1e-3, 1e-4), 100, 10)
    restored.load_state_dict(load_checkpoint(tmp_path / "s.pt")["scheduler"])
    assert restored.get_last_lr() == pytest.approx(scheduler.get_last_lr())


def test_run_folders_never_collide_within_one_second(tmp_path):
    now = 1_700_000_000.0
    folders = [create_run_dir(tmp_path, "unet", now=now) for _ in range(3)]
    assert len(set(folders)) == 3
    assert [folder.name.count("-") for folder in folders] == [1, 2, 2]
    assert folders[1].name == folders[0].name + "-2"


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint({"rng": capture_rng_state()}, tmp_path / "rng.pt")
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    restore_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(3), expected[0])
    np.testing.assert_array_equal(np.random.rand(3), expected[1])
    assert random.random() == expected[2]


def test_metrics_log_is_strict_json_and_truncates_on_resume(tmp_path):
    log = MetricsLog(tmp_path / "metrics.jsonl")
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "miou": float("nan") if epoch == 2 else 0.5})
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[1]) == {"epoch": 2, "miou": None}
    resumed = MetricsLog(tmp_path / "metrics.jsonl")
    resumed.load(up_to_epoch=2)
    assert [record["epoch"] for record in resumed.records] == [1, 2]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_batch_norm_recalibration_sets_statistics_of_the_current_weights():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.BatchNorm2d(2)).eval()
    batches = [(torch.rand(4, 3, 8, 8) * 5 + 2, torch.zeros(4, 8, 8, dtype=torch.long)) for _ in range(3)]
    recalibrate_batch_norm(model, batches, StepSettings.for_device(torch.device("cpu")))
    with torch.no_grad():
        features = [model[0](images) for images, _ in batches]
    expected_mean = torch.stack([feature.mean(dim=(0, 2, 3)) for feature in features]).mean(0)
    expected_var = torch.stack([feature.var(dim=(0, 2, 3)) for feature in features]).mean(0)
    torch.testing.assert_close(model[1].running_mean, expected_mean)
    torch.testing.assert_close(model[1].running_var, expected_var)
    assert not model.training and model[1].momentum == 0.1  # mode and momentum restored
