"""bf16 autocast and channels-last tensors, the CUDA defaults, run on the CPU (PyTorch's CPU autocast
supports bf16): float32 losses and metrics, batch-norm recalibration under autocast, a bf16 run
that trains, resumes exactly and exports a float32 ONNX graph, and config.json files of earlier
versions (``amp``) that still load.
"""

from __future__ import annotations

import json

import onnx
import pytest
import torch
from typer.testing import CliRunner

from covseg.checkpoint import load_checkpoint
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.evaluation.evaluate import evaluate_model
from covseg.training import TrainConfig
from covseg.training import api as training_api
from covseg.training.loop import StepSettings, recalibrate_batch_norm, train_one_epoch
from covseg.training.losses import build_loss
from tests.test_models import MODEL_NAMES
from tests.tiny_model import tiny_model_installed

runner = CliRunner(env={"COLUMNS": "250"})
CPU = torch.device("cpu")
BF16 = StepSettings.for_device(CPU, "bf16", channels_last=True)
TINY = ["--dataset-option", "count=10", "--dataset-option", "size=48", "--image-size", "32", "--batch-size",
        "4", "--workers", "0", "--device", "cpu", "--deterministic"]
BF16_OPTIONS = ["--precision", "bf16", "--channels-last"]


class SmallNet(torch.nn.Module):
    """conv-BN-ReLU-conv: the layers autocast treats differently (convolutions in bf16, batch norm)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                            torch.nn.ReLU())
        self.head = torch.nn.Conv2d(8, 4, 1)

    def forward(self, images):
        return self.head(self.features(images))


def batches(count: int = 3, size: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [(torch.rand(4, 3, size, size, generator=generator) * 3 + 1,
             torch.randint(0, 4, (4, size, size), generator=generator)) for _ in range(count)]


@pytest.mark.parametrize("loss_name", ["cross-entropy", "cross-entropy+dice"])
def test_a_bf16_channels_last_step_keeps_weights_gradients_and_loss_in_float32(loss_name):
    torch.manual_seed(0)
    model = BF16.prepare_model(SmallNet())
    assert model.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    images, masks = BF16.to_device(*batches(1)[0])
    assert images.is_contiguous(memory_format=torch.channels_last)
    with BF16.autocast():
        logits = model(images)
    assert logits.dtype == torch.bfloat16  # the convolutions ran in bf16
    loss = build_loss(loss_name, 4)(logits, masks)
    assert loss.dtype == torch.float32
    loss.backward()
    assert all(parameter.dtype == torch.float32 and parameter.grad.dtype == torch.float32
               for parameter in model.parameters())


def test_an_epoch_in_bf16_trains_like_fp32():
    """Same seed, same batches: the bf16 losses follow the fp32 ones to bf16's precision."""
    losses = {}
    for settings in (StepSettings.for_device(CPU), BF16):
        torch.manual_seed(0)
        model = settings.prepare_model(SmallNet())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = build_loss("cross-entropy", 4)
        result = train_one_epoch(model, batches(4), optimizer, loss_fn, settings)
        assert result.loss_sum.dtype == torch.float64 and result.steps == 4
        losses[settings.precision] = result.loss_sum.item() / result.steps
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_batch_norm_recalibration_under_autocast_sets_float32_statistics_of_the_weights():
    statistics = {}
    for settings in (StepSettings.for_device(CPU), BF16):
        torch.manual_seed(0)
        model = settings.prepare_model(SmallNet()).eval()
        recalibrate_batch_norm(model, batches(), settings)
        norm = model.features[1]
        assert norm.running_mean.dtype == norm.running_var.dtype == torch.float32
        statistics[settings.precision] = (norm.running_mean.clone(), norm.running_var.clone())
    for bf16, fp32 in zip(statistics["bf16"], statistics["fp32"], strict=True):
        torch.testing.assert_close(bf16, fp32, rtol=0.02, atol=0.02)  # bf16 keeps ~3 significant digits


def test_evaluation_under_bf16_counts_the_classes_of_float32_logits():
    """The logits come out of autocast in bf16; the class is chosen after casting them to float32."""
    torch.manual_seed(0)
    model = SmallNet().eval()
    seen = []
    loader = batches(2)
    _, fp32 = evaluate_model(model, loader, CPU, 4)
    confusion, bf16 = evaluate_model(BF16.prepare_model(model), loader, CPU, 4, torch.bfloat16,
                                     on_batch=lambda images, masks, labels: seen.append((images, labels)),
                                     channels_last=True)
    assert seen[0][0].is_contiguous(memory_format=torch.channels_last)
    assert seen[0][1].dtype == torch.int64 and confusion.sum() == 2 * 4 * 16 * 16
    assert bf16["pixel_accuracy"] == pytest.approx(fp32["pixel_accuracy"], abs=0.02)
    assert not model.training


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_runs_in_bf16_channels_last(name):
    """What a first `covseg benchmark --models all` on a GPU runs, once per model, on the CPU: the
    forward pass in training mode (the backward pass mirrors its operations; the tiny model's run
    below goes through it)."""
    from covseg.core.registry import create_model

    torch.manual_seed(0)
    model = BF16.prepare_model(create_model(name)).train()
    images, masks = BF16.to_device(torch.rand(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32)))
    with torch.no_grad(), BF16.autocast():
        logits = model(images)
    assert logits.shape == (2, 4, 32, 32) and logits.dtype == torch.bfloat16
    loss = build_loss("cross-entropy+dice", 4)(logits, masks)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.fixture
def tiny_model(tmp_path, monkeypatch):
    with tiny_model_installed(tmp_path, monkeypatch) as name:
        yield name


def only_run(folder, model):
    (run,) = [path for path in (folder / model).iterdir() if path.is_dir()]
    return run


class CtrlCInEpoch:
    """Stands in for train_one_epoch: Ctrl-C before the first batch of epoch ``epoch``."""

    real = staticmethod(training_api.train_one_epoch)

    def __init__(self, epoch: int):
        self.epoch, self.calls = epoch, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.epoch:
            raise KeyboardInterrupt
        return self.real(*args, **kwargs)


def test_a_bf16_channels_last_run_trains_resumes_exactly_evaluates_and_exports_float32(
    tmp_path, monkeypatch, tiny_model
):
    straight = runner.invoke(app, ["train", tiny_model, "--epochs", "2", "--out", str(tmp_path / "straight"),
                                   *TINY, *BF16_OPTIONS])
    assert straight.exit_code == 0, straight.output
    assert "on cpu x1, bf16, channels-last" in " ".join(straight.output.split())
    expected = only_run(tmp_path / "straight", tiny_model)
    config = json.loads((expected / "config.json").read_text())
    assert (config["precision"], config["channels_last"]) == ("bf16", True)
    assert config["sources"]["precision"] == "--precision"
    assert json.loads((expected / "summary.json").read_text())["precision"] == "bf16"

    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch(epoch=2))
    killed = runner.invoke(app, ["train", tiny_model, "--epochs", "2", "--out", str(tmp_path / "killed"),
                                 *TINY, *BF16_OPTIONS])
    assert killed.exit_code == 130, killed.output
    monkeypatch.setattr(training_api, "train_one_epoch", CtrlCInEpoch.real)
    run = only_run(tmp_path / "killed", tiny_model)
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    assert "bf16, channels-last" in " ".join(resumed.output.split())  # the run's choice, kept
    weights, resumed_weights = (load_checkpoint(path / "last.pt")["state_dict"] for path in (expected, run))
    for name, tensor in weights.items():
        assert tensor.dtype == resumed_weights[name].dtype
        assert torch.equal(tensor, resumed_weights[name]), name
        assert not tensor.is_floating_point() or tensor.dtype == torch.float32  # autocast left them fp32

    # covseg eval with the run's settings scores exactly what training logged for best.pt.
    scores = tmp_path / "eval.json"
    evaluated = runner.invoke(app, ["eval", str(expected), "--device", "cpu", *BF16_OPTIONS,
                                    "--json", str(scores)])
    assert evaluated.exit_code == 0, evaluated.output
    assert "bf16, channels-last" in " ".join(evaluated.output.split())
    summary = json.loads((expected / "summary.json").read_text())
    assert json.loads(scores.read_text())["metrics"]["miou"] == summary["best_metrics"]["miou"]

    exported = tmp_path / "tiny.onnx"
    result = runner.invoke(app, ["export", str(expected), "--onnx", "--out", str(exported)])
    assert result.exit_code == 0, result.output
    graph = onnx.load(exported).graph
    float32 = onnx.TensorProto.FLOAT
    assert graph.input[0].type.tensor_type.elem_type == graph.output[0].type.tensor_type.elem_type == float32
    assert {initializer.data_type for initializer in graph.initializer} <= {float32, onnx.TensorProto.INT64}
    assert not [node for node in graph.node if node.op_type == "Cast"
                and any(attribute.i == onnx.TensorProto.BFLOAT16 for attribute in node.attribute)]


def test_a_config_json_of_earlier_versions_with_amp_still_loads(tmp_path):
    current = TrainConfig.from_recipe("unet", epochs=3).to_dict()
    del current["precision"], current["channels_last"]
    cases = [
        ({"amp": True}, {}, None),  # bf16 on CUDA, float32 on the CPU: today's default
        ({"amp": False}, {"amp": "not used: the CPU trains in float32"}, None),  # a CPU run's record
        ({"amp": False}, {"amp": "--amp"}, "fp32"),  # --no-amp
    ]
    for values, sources, precision in cases:
        path = tmp_path / "config.json"
        path.write_text(json.dumps({**current, **values, "sources": {**current["sources"], **sources}}))
        config = TrainConfig.load(path)
        assert config.precision == precision and config.channels_last is None
        assert "amp" not in config.sources
        if precision:
            assert config.sources["precision"].startswith("--amp")


def test_amp_in_a_config_file_says_what_replaced_it(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("amp = false\n")
    with pytest.raises(CovsegError) as error:
        TrainConfig.resolve("unet", config_file=path)
    assert str(error.value) == (f"{path}: unknown setting 'amp'; it is now precision: bf16 (amp on) or "
                                "fp32 (amp off)")
