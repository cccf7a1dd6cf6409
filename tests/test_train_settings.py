"""Training settings live once: options generated from TrainConfig, --config files, precedence,
conflicts, the intensity rule, and the batch-norm batch-of-one check.

Runs are a narrow unet (``base_channels=8``: the same code at a fraction of the compute and checkpoint
size) on tiny phantom or 8-bit folder slices (32x32, 1 epoch, CPU, no workers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from covseg.benchmark.plan import BenchmarkSettings, Pair, RunOptions, prepare_plan, resolve_settings
from covseg.checkpoint import load_checkpoint
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.evaluation.trained import load_trained_model
from covseg.plugins import ModelEntry, hookimpl
from covseg.training import TrainConfig
from covseg.training.batchnorm import single_value_batch_norm
from covseg.training.config import shared_settings
from covseg.training.distributed import DistributedContext, synchronise_batch_norm
from covseg.training.recipes import REFERENCE_MODELS, REFERENCE_RECIPE
from covseg.training.settings import BENCHMARK, MACHINE, TRAIN, bounds_text

runner = CliRunner(env={"COLUMNS": "250"})
TINY = ["--dataset-option", "count=8", "--dataset-option", "size=32", "--image-size", "32", "--epochs", "1",
        "--workers", "0", "--device", "cpu"]
NARROW = ["--model-option", "base_channels=8"]
TOML = """recipe = "reference"
epochs = 5
lr = 2e-5
batch_size = 4

[dataset_options]
count = 8
"""
YAML = """recipe: reference
epochs: 5
lr: 2e-5  # YAML 1.1 would read this as a string; covseg reads a number
batch_size: 4
dataset_options:
  count: 8
"""


def command_options(name: str) -> dict[str, typer.core.click.Option]:
    """The click options of ``covseg NAME``, by option string (``--epochs``)."""
    command = typer.main.get_command(app).commands[name]
    return {opt: param for param in command.params for opt in param.opts}


def only_run(folder, model="unet"):
    (run,) = [path for path in (folder / model).iterdir() if path.is_dir()]
    return run


def fail_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---- generated options -------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [TRAIN, BENCHMARK])
def test_every_setting_a_command_takes_is_an_option_with_help_bounds_and_defaults(command):
    options = command_options(command)
    settings = {name: info for name, info in TrainConfig.settings().items()
                if info.option and command in info.commands}
    expected = {"epochs", "lr", "pretrained", "normalisation", "split_file", "val_fraction", "device"}
    assert expected <= set(settings)
    for name, info in settings.items():
        param = options[info.option]
        assert param.help and info.help in param.help, name
        assert "(default: " in param.help, name
        bounds = bounds_text(info)
        if bounds:
            assert bounds in param.help, name
        for choice in info.choices or ():
            assert choice in param.help, name
    assert "1..100000 epochs" in options["--epochs"].help
    assert "150; reference recipe: 1500" in options["--epochs"].help
    assert "--no-channels-last" in options["--channels-last"].secondary_opts


def test_benchmark_takes_every_shared_and_machine_setting_but_not_the_per_pair_ones():
    options = command_options(BENCHMARK)
    for name, info in TrainConfig.settings().items():
        if info.option is None:
            continue
        if info.scope in ("shared", MACHINE):
            assert info.option in options, name
    assert "--seed" not in options and "--seeds" in options
    assert {"--split-file", "--window", "--lr", "--pretrained"} <= set(options)
    machine = {"device", "workers", "precision", "channels_last", "compile", "deterministic",
               "checkpoint_every", "loggers"}
    assert machine == {
        name for name, info in TrainConfig.settings().items() if info.scope == MACHINE}
    assert "--model-option" not in options  # one model's factory arguments: covseg train only
    assert "lr" in shared_settings() and "device" not in shared_settings()


def test_resume_rule_and_benchmark_scope_come_from_the_field_metadata():
    settings = TrainConfig.settings()
    assert {name for name, info in settings.items() if info.resumable} == {
        "epochs", "device", "workers", "precision", "channels_last", "compile", "deterministic",
        "checkpoint_every", "loggers"}
    assert settings["seed"].commands == (TRAIN,) and settings["out"].commands == (TRAIN,)


# ---- layers: option > config file > recipe > default -----------------------------------------------
@pytest.mark.parametrize(("name", "text"), [("my.toml", TOML), ("my.yaml", YAML), ("my.yml", YAML)])
def test_precedence_option_over_config_file_over_recipe_over_default(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    config = TrainConfig.resolve("unet", options={"epochs": 3}, config_file=path, from_cli=True)
    assert config.epochs == 3 and config.sources["epochs"] == "--epochs"  # option over file
    assert config.lr == 2e-5 and config.sources["lr"] == f"config {path}"  # file over recipe (1e-5)
    assert config.optimizer == "adam" and config.sources["optimizer"] == "recipe reference"  # recipe
    assert config.pretrained is False and "pretrained" not in config.sources  # field default
    assert config.dataset_options == {"count": "8"} and config.batch_size == 4
    assert config.recipe == "reference" and config.sources["recipe"] == f"config {path}"


def test_recipes_are_data_of_the_shape_of_a_config_file(tmp_path):
    path = tmp_path / "reference.toml"
    lines = [f"{key} = {json.dumps(value)}" for key, value in REFERENCE_RECIPE.values.items()]
    path.write_text("\n".join(lines) + "\n")
    from_file = TrainConfig.resolve("unet", config_file=path)
    from_recipe = TrainConfig.from_recipe("unet", recipe="reference")
    for name in REFERENCE_RECIPE.values:
        assert getattr(from_file, name) == getattr(from_recipe, name), name


@pytest.mark.parametrize(("text", "message"), [
    ("learning_rate = 1e-3\n", "{path}: unknown setting 'learning_rate'"),
    ("batch-size = 4\n", "{path}: unknown setting 'batch-size'; did you mean batch_size"),
    ("window = 'lung'\n", "{path}: unknown setting 'window'; did you mean normalisation (the setting of"),
    ("epochs = '8'\n", "{path}: epochs: expected an integer, got the string '8'"),
    ("epochs = 2.5\n", "{path}: epochs: expected an integer, got 2.5"),
    ("lr = inf\n", "{path}: lr: inf is not a finite number"),
    ("lr = nan\n", "{path}: lr: nan is not a finite number"),
    ("dataset_options = [1, 2]\n", "{path}: dataset_options: expected a table of key/value pairs, got"),
    ("[epochs]\nvalue = 3\n", "{path}: epochs: expected an integer, got a table"),
    ("[dataset_options]\ncount = [8]\n", "{path}: dataset_options: option 'count' must be a string or"),
    ("pretrained = 'yes'\n", "{path}: pretrained: expected true or false, got the string 'yes'"),
    ("epochs = 0\n", "{path}: epochs 0: must be between 1 and 100000"),
    ("image_size = 100000\n", "{path}: image_size 100000: must be between 32 and 4096"),
    ("class_names = ['a', 'b']\n", "{path}: class_names: covseg records this itself; it cannot be set"),
    ("recipe = 'fast'\n", "{path}: recipe fast: unknown recipe; choose one of reference, default"),
    ("epochs = 3\nepochs = 4\n", "{path} is not valid TOML"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = tmp_path / "my.toml"
    path.write_text(text)
    result = runner.invoke(app, ["train", "unet", "--config", str(path), "--out", str(tmp_path / "runs")])
    assert fail_line(result).startswith("error: " + message.format(path=path))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("epochs: '8'\n", "{path}: epochs: expected an integer, got the string '8'"),
    ("epochs: {a: 1}\n", "{path}: epochs: expected an integer, got a table"),
    ("- epochs\n", "{path} holds a list, not a table of settings"),
    ("epochs: [\n", "{path} is not valid YAML"),
    ("seed: 3\n", "{path}: seed: covseg benchmark sets this itself per pair (use --seeds)"),
    ("model: unet\n", "{path}: model: covseg benchmark sets this itself per pair (use --models)"),
])
def test_a_bad_yaml_file_is_one_line_too(tmp_path, text, message):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    command = "benchmark" if "benchmark" in message else "train"
    args = [command, *(["unet"] if command == "train" else ["--models", "unet"]), "--config", str(path),
            "--out", str(tmp_path / "out")]
    assert fail_line(runner.invoke(app, args)).startswith("error: " + message.format(path=path))


def test_config_file_that_is_missing_or_of_another_kind(tmp_path):
    missing = runner.invoke(app, ["train", "unet", "--config", str(tmp_path / "no.toml")])
    assert fail_line(missing) == f"error: --config {tmp_path / 'no.toml'}: no such file"
    (tmp_path / "my.ini").write_text("epochs = 3\n")
    other = runner.invoke(app, ["train", "unet", "--config", str(tmp_path / "my.ini")])
    assert fail_line(other) == f"error: --config {tmp_path / 'my.ini'}: expected a .toml, .yaml or .yml file"


# ---- conflicting and unused settings --------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--split-file", "s.json", "--val-fraction", "0.3"],
     "error: --val-fraction 0.3 has no effect with --split-file s.json (the split file fixes the validation "
     "slices); drop one"),
    (["--scheduler", "none", "--warmup-epochs", "2"],
     "error: --warmup-epochs 2 has no effect with --scheduler none (no warm-up); drop one"),
    # Given equal to its default, a setting that would be ignored is refused all the same.
    (["--momentum", "0.9"],
     "error: --momentum 0.9 has no effect with --optimizer adamw (only sgd takes a momentum); drop one"),
    (["--recipe", "reference", "--momentum", "0.9"],
     "error: --momentum 0.9 has no effect with recipe reference: optimizer adam (only sgd takes a momentum); "
     "drop one"),
    (["--scheduler", "poly", "--warmup-epochs", "0"],
     "error: --warmup-epochs 0 has no effect with --scheduler poly (no warm-up); drop one"),
    (["--split-file", "s.json", "--val-fraction", "0.2"],
     "error: --val-fraction 0.2 has no effect with --split-file s.json (the split file fixes the validation "
     "slices); drop one"),
    (["--epochs", "3", "--warmup-epochs", "4"], "error: --warmup-epochs 4: must be at most the epochs"),
    (["--epochs", "ten"], "error: --epochs ten: expected an integer"),
    (["--lr", "inf"], "error: --lr inf: expected a finite number"),
    (["--image-size", "99999"], "error: --image-size 99999: must be between 32 and 4096"),
])
def test_conflicting_or_unbounded_options_are_refused_before_any_run_folder(tmp_path, args, message):
    result = runner.invoke(app, ["train", "unet", *args, "--out", str(tmp_path / "runs")])
    assert fail_line(result).startswith(message)
    assert not (tmp_path / "runs").exists()


def test_a_conflict_between_file_and_option_names_both(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("val_fraction = 0.3\n")
    result = runner.invoke(app, ["train", "unet", "--config", str(path), "--split-file", "s.json"])
    assert fail_line(result).startswith(
        f"error: {path}: val_fraction 0.3 has no effect with --split-file s.json")


# ---- renamed options --------------------------------------------------------------------------------
@pytest.mark.parametrize("command", ["train", "benchmark"])
def test_the_old_split_spelling_still_sets_the_split_file_with_one_warning(tmp_path, command):
    # `--split FILE` was the split file in train and benchmark; eval's --split names a subset.
    args = [command, *(["unet"] if command == "train" else []), "--split", "s.json", "--val-fraction", "0.3",
            "--out", str(tmp_path / "runs")]
    result = runner.invoke(app, args)
    # The value reached the split file: the conflict names the new spelling.
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"warning: --split is deprecated in `covseg {command}`: use --split-file",
        "error: --val-fraction 0.3 has no effect with --split-file s.json (the split file fixes the "
        "validation slices); drop one"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("command", "subset"), [("train", "val"), ("benchmark", "test"), ("train", "all")])
def test_eval_subset_names_under_the_old_split_spelling_are_explained_in_one_line(tmp_path, monkeypatch,
                                                                                 command, subset):
    monkeypatch.chdir(tmp_path)  # no file of that name here
    args = [command, *(["unet"] if command == "train" else []), "--split", subset, "--out", "runs"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: --split {subset}: in `covseg {command}`, --split is the old name of --split-file FILE; "
        f"there is no split file {subset}, and eval's --split NAME (val, train, test or all) picks which "
        "of a run's slices it scores"]
    assert list(tmp_path.iterdir()) == []


def test_a_split_file_named_like_an_eval_subset_is_still_a_split_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "val").write_text("{}")
    result = runner.invoke(app, ["train", "unet", "--split", "val", "--val-fraction", "0.3", "--out", "runs"])
    assert result.stderr.splitlines() == [
        "warning: --split is deprecated in `covseg train`: use --split-file",
        "error: --val-fraction 0.3 has no effect with --split-file val (the split file fixes the "
        "validation slices); drop one"]


def test_both_spellings_of_a_renamed_option_are_refused(tmp_path):
    result = runner.invoke(app, ["train", "unet", "--split", "a.json", "--split-file", "b.json",
                                 "--out", str(tmp_path / "runs")])
    assert fail_line(result) == ("error: --split and --split-file are the same option (--split is its old "
                                 "name); give --split-file only")
    assert result.exit_code == 2


def test_old_spellings_are_hidden_from_the_help():
    for command in ("train", "benchmark"):
        text = runner.invoke(app, [command, "--help"], terminal_width=200).stdout
        assert "--split-file" in text and "--split " not in text


def test_a_value_the_run_does_not_use_is_recorded_as_unused():
    config = TrainConfig.from_recipe("unet", recipe="reference", split_file="s.json")
    assert config.val_fraction is None and config.sources["val_fraction"].startswith("not used")
    assert TrainConfig.from_recipe("unet", scheduler="none").warmup_epochs == 0


def write_8bit_folder(folder, count=8, size=32):
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    generator = np.random.default_rng(0)
    for index in range(count):
        image = generator.integers(0, 256, (size, size), dtype=np.uint8)
        mask = np.zeros((size, size), dtype=np.uint8)
        mask[4:12, 4 + index:14 + index] = 1 + index % 3
        Image.fromarray(image).save(folder / "images" / f"slice{index}.png")
        Image.fromarray(mask).save(folder / "masks" / f"slice{index}.png")


def test_a_window_on_8bit_slices_is_refused_and_none_is_recorded_when_not_given(tmp_path):
    data = tmp_path / "png"
    write_8bit_folder(data)
    common = ["--data", str(data), "--image-size", "32", "--epochs", "1", "--batch-size", "4", "--workers",
              "0", "--device", "cpu", "--out", str(tmp_path / "runs")]
    refusal = (f"{data} holds 8-bit slices, which are divided by 255; HU windows apply to Hounsfield-unit "
               "data only; drop --window")
    for typed, shown in (("lung", "-600:1500 (lung)"), ("-600:1500", "-600:1500 (lung)"),
                         ("-500:1400", "-500:1400")):  # the numbers used; a preset's name where one is
        refused = runner.invoke(app, ["train", "unet", "--window", typed, *common])
        assert fail_line(refused) == f"error: --window {shown}: {refusal}"
        assert not (tmp_path / "runs").exists()
    bench = runner.invoke(app, ["benchmark", "--models", "unet", "--window", "lung", *common[:-1],
                                str(tmp_path / "bench")])
    assert "holds 8-bit slices" in fail_line(bench) and not (tmp_path / "bench").exists()

    result = runner.invoke(app, ["train", "unet", *NARROW, *common])
    assert result.exit_code == 0, result.output
    run = only_run(tmp_path / "runs")
    config = json.loads((run / "config.json").read_text())
    assert config["normalisation"] is None and config["intensity"] == "uint8"
    assert "normalisation" not in config["sources"]
    assert load_checkpoint(run / "best.pt")["intensity"] == "uint8"
    assert load_trained_model(run).model_name == "unet"  # eval, export and predict still load it


# ---- the end-to-end case of the issue, and resuming -----------------------------------------------
def test_train_with_a_config_file_and_an_option_records_the_merged_config(tmp_path):
    path = tmp_path / "my.toml"
    path.write_text("lr = 0.002\nepochs = 5\nbatch_size = 4\nimage_size = 32\n"
                    "[dataset_options]\ncount = 8\nsize = 32\n")
    out = tmp_path / "runs"
    result = runner.invoke(app, ["train", "unet", "--config", str(path), "--epochs", "1", "--workers", "0",
                                 "--device", "cpu", *NARROW, "--out", str(out)])
    assert result.exit_code == 0, result.output
    run = only_run(out)
    recorded = json.loads((run / "config.json").read_text())
    assert (recorded["epochs"], recorded["lr"], recorded["batch_size"]) == (1, 0.002, 4)
    assert recorded["optimizer"] == "adamw" and recorded["dataset_options"] == {"count": "8", "size": "32"}
    assert recorded["sources"]["epochs"] == "--epochs" and recorded["sources"]["lr"] == f"config {path}"
    assert recorded["sources"]["dataset"] == "the embedded phantom"
    assert "optimizer" not in recorded["sources"]  # the field default: covseg's default recipe
    assert TrainConfig.load(run / "config.json").lr == 0.002

    # --resume accepts the same file (nothing changes) and refuses one that changes a fixed setting.
    same = runner.invoke(app, ["train", "--resume", str(run), "--config", str(path), "--epochs", "1"])
    assert same.exit_code == 0, same.output
    path.write_text("lr = 0.01\n")
    changed = runner.invoke(app, ["train", "--resume", str(run), "--config", str(path)])
    message = f"error: --resume keeps the run's settings; {path}: lr cannot change"
    assert fail_line(changed).startswith(message)

    # A damaged config.json or metrics.jsonl is one line naming the file and the key or line.
    config_path, metrics_path = run / "config.json", run / "metrics.jsonl"
    for key, value, problem in [("epochs", "8", "expected an integer, got the string '8'"),
                                ("dataset_options", [1], "expected a table of key/value pairs, got a list"),
                                ("lr", {"value": 1}, "expected a number, got a table"),
                                ("normalisation", {"windows": "lung"}, "normalisation record")]:
        config_path.write_text(json.dumps({**recorded, key: value}))
        damaged = runner.invoke(app, ["train", "--resume", str(run)])
        line = fail_line(damaged)
        assert line.startswith(f"error: {config_path}: {key}") and problem in line, line
    config_path.write_text(json.dumps(recorded))
    metrics_path.write_text(metrics_path.read_text()[:-12])  # a line cut by a crash
    cut = runner.invoke(app, ["train", "--resume", str(run), "--epochs", "2"])
    assert fail_line(cut).startswith(f"error: {metrics_path} line 1 is not valid JSON")


# ---- the benchmark shares the same settings -------------------------------------------------------
def test_benchmark_resolves_shares_and_records_the_same_settings(tmp_path):
    path = tmp_path / "bench.yaml"
    path.write_text("epochs: 2\nlr: 3e-4\nworkers: 0\n")
    options = {"pretrained": False, "normalisation": "lung,mediastinal,bone", "device": "cpu"}
    settings, machine = resolve_settings("unet", options, path, from_cli=True)
    assert settings.lr == 3e-4 and settings.epochs == 2 and settings.sources["lr"] == f"config {path}"
    assert settings.normalisation == {"windows": [[-600.0, 1500.0], [40.0, 400.0], [400.0, 1800.0]]}
    assert machine == RunOptions({"workers": 0, "device": "cpu"},
                                 {"workers": f"config {path}", "device": "--device"})
    plan = prepare_plan(tmp_path / "out", settings, [])
    recorded = json.loads((tmp_path / "out" / "benchmark.json").read_text())
    assert recorded["settings"]["lr"] == 3e-4 and recorded["settings"]["pretrained"] is False
    pair = plan.settings.train_config(Pair("unet", 1), tmp_path / "out", machine)
    assert (pair.lr, pair.seed, pair.workers, pair.device) == (3e-4, 1, 0, "cpu")
    assert pair.split_file == str(tmp_path / "out" / "split.json") and pair.val_fraction is None
    with pytest.raises(CovsegError, match=r"holds a benchmark run with --window .* not"):
        prepare_plan(tmp_path / "out", BenchmarkSettings.resolve({"epochs": 2, "lr": 3e-4}), [])
    result = runner.invoke(app, ["benchmark", "--report-only", "--lr", "0.1", "--out", str(tmp_path / "out")])
    assert "--report-only reads the settings from" in fail_line(result) and "drop --lr" in result.stderr


def test_run_options_travel_to_worker_processes_as_checked_json():
    options = RunOptions({"workers": 0, "precision": "fp32", "channels_last": False},
                         {"workers": "--workers", "precision": "--precision",
                          "channels_last": "--no-channels-last"})
    assert RunOptions.from_json(options.to_json()) == options
    with pytest.raises(CovsegError, match="--run-options: workers: expected an integer"):
        RunOptions.from_json('{"values": {"workers": "0"}}')
    with pytest.raises(CovsegError, match="lr is not a per-machine setting"):
        RunOptions({"lr": 0.1})


# ---- the reference study ---------------------------------------------------------------------------
def test_reference_models_are_seven_canonical_names():
    assert len(REFERENCE_MODELS) == len(set(REFERENCE_MODELS)) == 7
    known = {entry.name for entry in get_registry().models()}
    assert set(REFERENCE_MODELS) <= known


# ---- batch norm and one slice per step --------------------------------------------------------------
class PooledNorm(torch.nn.Module):
    """A third-party-like model: batch norm over a globally pooled (1x1) map, as in ASPP."""

    def __init__(self, num_classes: int = 4, in_channels: int = 3, data_dependent: bool = False):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, num_classes, 1)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.norm = torch.nn.BatchNorm2d(num_classes)
        self.data_dependent = data_dependent

    def forward(self, inputs):
        features = self.conv(inputs)
        if self.data_dependent and features.sum().item() > 1e9:  # cannot run on the meta device
            features = features * 0
        return features + self.norm(self.pool(features))


class ThirdPartyModels:
    @hookimpl
    def covseg_models(self):
        return [ModelEntry("pooled-norm", lambda num_classes=4, in_channels=3, pretrained=False:
                           PooledNorm(num_classes, in_channels), "BN over a 1x1 map (test).", "test")]


@pytest.fixture
def third_party_model():
    get_registry().register(ThirdPartyModels(), name="settings-test-models", package="covseg-tests")
    yield "pooled-norm"
    get_registry.cache_clear()


@pytest.mark.parametrize("data_dependent", [False, True])
def test_the_batch_norm_probe_finds_a_1x1_map_on_any_model(data_dependent):
    def build():
        return PooledNorm(data_dependent=data_dependent)  # data-dependent: not runnable on meta

    assert single_value_batch_norm(build, 1, 32, 32) == "norm"
    assert single_value_batch_norm(build, 2, 32, 32) is None


def test_probing_a_built_model_changes_nothing_in_it():
    torch.manual_seed(0)
    model = PooledNorm().eval()  # already built on the CPU: probed in place
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    state = torch.random.get_rng_state()
    assert single_value_batch_norm(lambda: model, 1, 32, 32) == "norm"
    assert single_value_batch_norm(lambda: model, 2, 32, 32) is None
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, before[name]), name  # no running statistics were updated
    assert not model.training and torch.equal(torch.random.get_rng_state(), state)


def test_the_probe_on_the_builtin_models():
    from covseg.core.registry import create_model

    deeplab = "deeplabv3-resnet50"
    assert single_value_batch_norm(lambda: create_model(deeplab), 1, 64, 64) == "model.classifier.0.convs.4.2"
    assert single_value_batch_norm(lambda: create_model(deeplab), 2, 64, 64) is None
    assert single_value_batch_norm(lambda: create_model("unet"), 1, 64, 64) is None


def test_batch_of_one_is_refused_before_the_run_folder_for_a_model_that_cannot_train_on_it(
    tmp_path, third_party_model
):
    result = runner.invoke(app, ["train", third_party_model, "--batch-size", "1", *TINY,
                                 "--out", str(tmp_path / "runs")])
    assert fail_line(result) == (
        "error: --batch-size 1: pooled-norm has batch norm over a 1x1 map (norm), which cannot train on one "
        "slice per step; use --batch-size 2 or more")
    assert not (tmp_path / "runs").exists()


def test_under_ddp_on_cuda_batch_norm_is_synchronised_and_keeps_its_weight_names():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    cuda_ddp = DistributedContext(rank=0, world_size=2, local_rank=0, device=torch.device("cuda", 0))
    converted = synchronise_batch_norm(cuda_ddp, model)
    assert isinstance(converted[1], torch.nn.SyncBatchNorm)
    assert list(converted.state_dict()) == list(model.state_dict())
    for world_size in (1, 2):  # one process need not; gloo (the CPU) cannot
        context = DistributedContext(0, world_size, 0, torch.device("cpu"))
        assert synchronise_batch_norm(context, model) is model


def test_the_readme_config_file_example_is_valid(tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("```toml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "my.toml").write_text(example)
    config = TrainConfig.resolve("unet", options={"epochs": 3}, config_file=tmp_path / "my.toml")
    assert (config.recipe, config.epochs, config.lr, config.image_size) == ("reference", 3, 3e-5, 256)
    assert len(config.normalisation["windows"]) == 3 and config.dataset_options == {"count": "40"}


def test_a_split_file_without_validation_slices_names_the_file(tmp_path):
    # The hint points at what to change: the split file, not --val-fraction (refused beside it).
    ids = [f"phantom_{index:04d}" for index in range(1, 7)]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"format": "covseg-split-1", "train_ids": ids, "val_ids": [], "seed": 0}))
    result = runner.invoke(app, ["train", "unet", "--dataset", "phantom", "--dataset-option", "count=6",
                                 "--split-file", str(path), "--out", str(tmp_path / "runs")])
    assert fail_line(result) == (f"error: the split of 6 slices leaves 6 for training and 0 for validation; "
                                 f"both need at least one (--split-file {path})")


def test_a_batch_larger_than_the_training_set_says_why_the_set_is_small(tmp_path):
    result = runner.invoke(app, ["train", "unet", "--dataset", "phantom", "--dataset-option", "count=4",
                                 "--dataset-option", "size=32", "--val-fraction", "0.5", "--out",
                                 str(tmp_path / "runs")])
    assert fail_line(result) == ("error: --batch-size 8 is larger than the training set (2 slices after the "
                                 "validation and test slices are held out); use --batch-size 2 or less, or "
                                 "hold out fewer slices")
