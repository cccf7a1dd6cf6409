"""Losses are plugin entries: covseg's two are a built-in plugin's, a third party's trains like them,
an unknown name is one line with the installed ones, a loss that misbehaves is one line naming it."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.training.losses import build_loss
from tests.fake_plugins import installed, write_distribution

runner = CliRunner(env={"COLUMNS": "250"})
TINY = ["--model-option", "base_channels=4", "--dataset-option", "count=8", "--dataset-option", "size=32",
        "--image-size", "32", "--batch-size", "2", "--epochs", "1", "--workers", "0", "--device", "cpu"]

THIRD_PARTY = """
    from covseg.plugins import CovsegError, LossEntry, hookimpl

    BUILT = []
    STEPS = []

    def build_focal(num_classes, class_weights):
        import torch

        BUILT.append((num_classes, class_weights))

        class Focal(torch.nn.Module):
            def forward(self, logits, target):
                STEPS.append(tuple(logits.shape))
                log_p = torch.nn.functional.log_softmax(logits.float(), dim=1)
                ce = torch.nn.functional.nll_loss(log_p, target, weight=class_weights, reduction="none")
                p_true = log_p.gather(1, target[:, None])[:, 0].exp()
                return ((1 - p_true) ** 2 * ce).mean()

        return Focal()

    def build_pixelwise(num_classes, class_weights):
        import torch
        return torch.nn.CrossEntropyLoss(reduction="none")

    def build_detached(num_classes, class_weights):
        import torch

        class Detached(torch.nn.Module):
            def forward(self, logits, target):
                return logits.float().mean().detach()

        return Detached()

    def build_broken(num_classes, class_weights):
        raise KeyError("gamma")

    def build_not_a_module(num_classes, class_weights):
        return lambda logits, target: logits.mean()

    @hookimpl
    def covseg_losses():
        return [
            LossEntry("focal-test", build_focal, "Focal loss, gamma 2, class-weighted."),
            LossEntry("pixelwise", build_pixelwise, "Forgets to average."),
            LossEntry("detached", build_detached, "Loses the gradient."),
            LossEntry("broken-loss", build_broken, "Raises when built."),
            LossEntry("not-a-module", build_not_a_module, "A plain function."),
        ]
"""


def train_cli(tmp_path, *arguments):
    return runner.invoke(app, ["train", "unet", *arguments, "--out", str(tmp_path / "runs"), *TINY])


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    write_distribution(tmp_path / "site", "covseg-focal", "0.2", {"focal_loss": THIRD_PARTY})
    with installed(monkeypatch, tmp_path / "site"):
        import focal_loss

        yield focal_loss


def test_the_two_builtin_losses_are_entries_of_a_builtin_plugin():
    provided = get_registry().provided("loss")
    assert [(item.entry.name, item.plugin.name, item.plugin.package) for item in provided] == [
        ("cross-entropy", "segmentation-losses", "covseg"),
        ("cross-entropy+dice", "segmentation-losses", "covseg"),
    ]
    assert all(isinstance(build_loss(item.entry.name, 4), torch.nn.Module) for item in provided)


def test_an_unknown_loss_is_one_line_with_the_installed_ones_before_any_run_folder(tmp_path):
    result = train_cli(tmp_path, "--loss", "cross-entropy+dise")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: unknown loss 'cross-entropy+dise'. Did you mean cross-entropy+dice, cross-entropy? "
        "Installed losses: cross-entropy, cross-entropy+dice (see `covseg plugins`).")
    assert not (tmp_path / "runs").exists()


def test_a_third_party_loss_trains_with_the_class_weights(tmp_path, third_party):
    result = train_cli(tmp_path, "--loss", "focal-test")
    assert result.exit_code == 0, result.output
    assert "loss focal-test" in result.output
    (run,) = (tmp_path / "runs" / "unet").iterdir()
    assert json.loads((run / "config.json").read_text())["loss"] == "focal-test"
    ((num_classes, weights),) = third_party.BUILT
    assert num_classes == 4 and weights.dtype == torch.float32 and tuple(weights.shape) == (4,)
    assert third_party.STEPS[:3] == [(2, 4, 32, 32)] * 3  # the training steps (6 slices, batch 2) used it
    assert "focal-test" in runner.invoke(app, ["plugins"]).output


@pytest.mark.parametrize(("name", "message"), [
    ("broken-loss", "loss 'broken-loss' (covseg-focal 0.2) failed to build: KeyError: 'gamma'"),
    ("not-a-module", "loss 'not-a-module' (covseg-focal 0.2): its build returned a function, not a "
                     "torch.nn.Module"),
])
def test_a_loss_that_cannot_be_built_is_one_line_naming_it(third_party, name, message):
    with pytest.raises(CovsegError) as error:
        build_loss(name, 4)
    assert str(error.value) == message


def test_a_loss_that_is_not_a_scalar_stops_at_its_first_step_in_one_line(tmp_path, third_party):
    loss = build_loss("pixelwise", 4)
    logits = torch.zeros(2, 4, 8, 8, requires_grad=True)
    with pytest.raises(CovsegError) as error:
        loss(logits, torch.zeros(2, 8, 8, dtype=torch.int64))
    assert str(error.value) == ("loss 'pixelwise' (covseg-focal 0.2) returned a torch.float32 tensor of "
                                "shape (2, 8, 8), not the mean loss as a 0-d float tensor")
    with pytest.raises(CovsegError) as error:
        build_loss("detached", 4)(logits, torch.zeros(2, 8, 8, dtype=torch.int64))
    assert str(error.value) == ("loss 'detached' (covseg-focal 0.2) returned a loss without a gradient "
                                "(detached from the logits)")
    result = train_cli(tmp_path, "--loss", "pixelwise")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: loss 'pixelwise' (covseg-focal 0.2) returned a torch")
    assert len(result.stderr.strip().splitlines()) == 1
