"""`--model-option KEY=VALUE`: parsed as JSON scalars, checked against the factory's signature before
anything is written, recorded in config.json and the checkpoints, and rebuilt by eval and export."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from covseg.checkpoint import load_checkpoint
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import create_model, get_registry
from covseg.evaluation.trained import load_trained_model
from covseg.onnx import read_metadata
from covseg.training import TrainConfig
from tests.fake_plugins import installed, write_distribution

runner = CliRunner(env={"COLUMNS": "250"})
TINY = ["--dataset-option", "count=8", "--dataset-option", "size=32", "--image-size", "32",
        "--batch-size", "2", "--epochs", "1", "--workers", "0", "--device", "cpu"]


def options_of(*pairs: str) -> dict:
    return TrainConfig.resolve("unet", options={"model_options": list(pairs)}, from_cli=True).model_options


def test_values_are_json_scalars_where_they_parse_else_text():
    assert options_of("base_channels=16", "scale=0.5", "flag=true", "off=false", "none=null", "name=resnet",
                      'quoted="16"', "listed=[1, 2]", " spaced = 3 ") == {
        "base_channels": 16, "scale": 0.5, "flag": True, "off": False, "none": None, "name": "resnet",
        "quoted": "16", "listed": "[1, 2]", "spaced": 3}
    assert options_of("base_channels=8", "base_channels=16") == {"base_channels": 16}  # a later key wins


@pytest.mark.parametrize(("pairs", "message"), [
    (["base_channels"], "--model-option: 'base_channels' is not KEY=VALUE"),
    (["pretrained=true"], "--model-option: 'pretrained' is set by covseg"),
    (["num_classes=3"], "--model-option: 'num_classes' is set by covseg"),
    (["not-a-name=3"], "--model-option: option name 'not-a-name' is not a keyword argument name"),
    (["scale=NaN"], "--model-option: scale=NaN: not a finite number"),
])
def test_malformed_options_are_refused_naming_the_option(pairs, message):
    with pytest.raises(CovsegError) as error:
        options_of(*pairs)
    assert str(error.value).startswith(message)


def test_a_config_file_table_and_config_json_keep_the_types(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text('[model_options]\nbase_channels = 16\nnote = "x"\n')
    config = TrainConfig.resolve("unet", config_file=path, from_cli=True)
    assert config.model_options == {"base_channels": 16, "note": "x"}
    assert config.sources["model_options"] == f"config {path}"
    config.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json").model_options == {"base_channels": 16, "note": "x"}
    path.write_text("[model_options]\nbase_channels = [16]\n")
    with pytest.raises(CovsegError, match=r"my.toml: model_options: option 'base_channels' must be a number"):
        TrainConfig.resolve("unet", config_file=path, from_cli=True)


def test_the_benchmark_does_not_take_model_options(tmp_path):
    path = tmp_path / "bench.toml"
    path.write_text("[model_options]\nbase_channels = 16\n")
    result = runner.invoke(app, ["benchmark", "--models", "unet", "--config", str(path),
                                 "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {path}: model_options: covseg benchmark does not take this "
                                      "setting (covseg train does)")


@pytest.mark.parametrize(("arguments", "message"), [
    (["unet", "--model-option", "width=3"],
     "error: --model-option: model 'unet' (covseg 0.1.0) has no option 'width' (its options: base_channels)"),
    (["fcn-resnet50", "--model-option", "base_channels=16"],
     "error: --model-option: model 'fcn-resnet50' (covseg 0.1.0) has no option 'base_channels' "
     "(it takes none)"),
    (["unet", "--model-option", "base_channels=0"],
     "error: unet option base_channels=0: must be an integer between 1 and 128"),
    (["unet", "--model-option", "base_channels=wide"],
     "error: unet option base_channels='wide': must be an integer between 1 and 128"),
])
def test_options_a_model_does_not_take_are_one_line_before_any_run_folder(tmp_path, arguments, message):
    result = runner.invoke(app, ["train", *arguments, "--out", str(tmp_path / "runs"), *TINY])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == message
    assert not (tmp_path / "runs").exists()


def test_deeplabv3plus_output_stride_8_dilates_the_encoder_and_doubles_the_aspp_rates():
    with torch.device("meta"):
        at_16 = create_model("deeplabv3plus-resnet101")
        at_8 = create_model("deeplabv3plus-resnet101", output_stride=8)
        logits = at_8.eval()(torch.zeros(1, 3, 64, 64))
    assert at_16.encoder.feature_info.reduction() == [4, 16]
    assert at_8.encoder.feature_info.reduction() == [4, 8]
    rates = [branch[0].dilation[0] for branch in list(at_8.aspp.convs)[1:4]]
    assert rates == [12, 24, 36]
    assert tuple(logits.shape) == (1, 4, 64, 64)
    with pytest.raises(CovsegError, match=r"output_stride=12: must be 8 or 16"):
        create_model("deeplabv3plus-xception", output_stride=12)


KWARGS_FACTORY = """
    from covseg.plugins import ModelEntry, hookimpl

    RECEIVED = {}

    def build(num_classes=4, in_channels=3, pretrained=False, **options):
        import torch
        RECEIVED.update(options)
        return torch.nn.Conv2d(in_channels, num_classes, 1)

    @hookimpl
    def covseg_models():
        return [ModelEntry("open-net", build, "Takes any option.", family="test")]
"""


def test_a_factory_with_kwargs_gets_every_option(tmp_path, monkeypatch):
    write_distribution(tmp_path, "covseg-open", "1.0", {"open_net": KWARGS_FACTORY})
    with installed(monkeypatch, tmp_path):
        create_model("open-net", anything=3, label="x")
        import open_net

        assert open_net.RECEIVED == {"anything": 3, "label": "x"}
        assert get_registry().model("open-net").name == "open-net"


def test_options_are_recorded_and_eval_and_export_rebuild_the_same_network(tmp_path):
    result = runner.invoke(app, ["train", "unet", "--model-option", "base_channels=8", "--out", str(tmp_path),
                                 *TINY])
    assert result.exit_code == 0, result.output
    assert "Training unet (base_channels=8)" in result.output
    (run,) = (tmp_path / "unet").iterdir()
    assert json.loads((run / "config.json").read_text())["model_options"] == {"base_channels": 8}
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(run / name)["model_options"] == {"base_channels": 8}
    trained = load_trained_model(run)  # eval, export and predict load it this way
    assert trained.model.stem[0][0].out_channels == 8
    parameters = sum(parameter.numel() for parameter in trained.model.parameters())
    assert parameters == pytest.approx(json.loads((run / "summary.json").read_text())["params_m"] * 1e6)

    evaluated = runner.invoke(app, ["eval", str(run), "--device", "cpu"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "miou" in evaluated.output
    onnx_path = tmp_path / "unet8.onnx"
    exported = runner.invoke(app, ["export", str(run), "--out", str(onnx_path)])
    assert exported.exit_code == 0, exported.output
    assert read_metadata(onnx_path).trained is True
