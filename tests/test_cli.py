"""The CLI through typer's CliRunner and through the installed `covseg` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from covseg import __version__
from covseg.cli import app
from tests.fake_plugins import write_distribution
from tests.test_models import MODEL_NAMES

runner = CliRunner()
COVSEG = str(Path(sys.executable).with_name("covseg"))


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"covseg {__version__}"


def _model_rows(stdout: str) -> dict[str, tuple[str, str]]:
    """`covseg models` by model name: (the model cell's text, the description cell's text); rows
    are separated by blank lines, the second column starts where its heading does."""
    lines = stdout.splitlines()
    column = next(line for line in lines if line.lstrip().startswith("model ")).index("description")
    rows: dict[str, tuple[str, str]] = {}
    cells: list[list[str]] = []
    for line in [*lines, ""]:
        if not line.strip() or "─" in line:
            if cells:
                left = " ".join(" ".join(text for text, _ in cells).split())
                rows[left.split()[0]] = (left, " ".join(" ".join(text for _, text in cells).split()))
            cells = []
        elif not line.lstrip().startswith("model "):
            cells.append((line[:column], line[column:]))
    return rows


def test_models_lists_name_aliases_family_and_provider_at_80_columns():
    result = runner.invoke(app, ["models"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 80
    rows = _model_rows(result.stdout)
    assert set(MODEL_NAMES) <= set(rows)
    model, description = rows["deeplabv3-resnet50"]
    assert model == "deeplabv3-resnet50 alias deeplab-resnet50 family deeplabv3"
    assert description == ("DeepLab V3 (torchvision) on a dilated ResNet-50 backbone, ASPP, output stride 8. "
                           "covseg_builtin.models.torchvision_segmentation (covseg)")
    assert rows["unet"][0] == "unet family unet options: base_channels=64"  # the factory's options
    assert rows["deeplabv3plus-xception"][0].endswith("options: output_stride=16")
    assert "params" not in result.stdout  # nothing is built unless asked
    assert result.stderr == ""


def test_models_params_counts_each_model_on_the_meta_device():
    result = runner.invoke(app, ["models", "--params"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    rows = _model_rows(result.stdout)
    assert rows["fcn-resnet50"][0] == "fcn-resnet50 family fcn 32.9 M params"
    assert rows["unet"][0] == "unet family unet options: base_channels=64 31.0 M params"


def test_plugins_lists_the_builtin_plugins_with_versions():
    result = runner.invoke(app, ["plugins"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line.rstrip()) for line in result.stdout.splitlines()) <= 80
    lines = [" ".join(line.split()) for line in result.stdout.splitlines()]
    row = lines.index("torchvision-segmentation covseg_builtin.models.torchvision_segmentation")
    assert lines[row + 1] == f"covseg {__version__} models: deeplabv3-resnet101, deeplabv3-resnet50,"
    assert lines[row + 2] == "fcn-resnet101, fcn-resnet50"
    assert "segmentation covseg_builtin.metrics.segmentation" in lines


def test_installed_command_runs_as_a_subprocess():
    result = subprocess.run([COVSEG, "models"], capture_output=True, text=True, check=False,
                            env={**os.environ, "COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert all(name in result.stdout for name in MODEL_NAMES)
    module = subprocess.run([sys.executable, "-m", "covseg", "--version"], capture_output=True, text=True)
    assert module.stdout.strip() == f"covseg {__version__}"


def test_a_plugin_that_fails_to_import_does_not_take_the_cli_down(tmp_path):
    # A real installed distribution (a .dist-info on sys.path) whose entry point cannot import.
    write_distribution(tmp_path, "covseg-broken", "0.3",
                       {"covseg_broken_plugin": "import a_module_that_is_not_installed\n"},
                       {"broken": "covseg_broken_plugin"})
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "100"}
    line = ("warning: plugin broken (covseg-broken 0.3) failed at import: ModuleNotFoundError: No module "
            "named 'a_module_that_is_not_installed'")

    models = subprocess.run([COVSEG, "models"], capture_output=True, text=True, env=env, check=False)
    assert models.returncode == 0, models.stderr
    assert all(name in models.stdout for name in MODEL_NAMES)
    assert models.stderr.splitlines() == [line]

    plugins = subprocess.run([COVSEG, "plugins"], capture_output=True, text=True, env=env, check=False)
    assert plugins.returncode == 0, plugins.stderr
    lines = plugins.stdout.splitlines()
    failure = next(index for index, text in enumerate(lines) if text.startswith(" broken "))
    assert "failed at import: ModuleNotFoundError" in lines[failure]
    assert "covseg-broken 0.3" in lines[failure + 1]
    assert plugins.stderr.splitlines() == [line]


def test_parse_errors_are_one_line_naming_the_option_and_what_is_wrong():
    cases = {
        ("train", "unet", "--nosuch"): "error: no such option --nosuch; see `covseg train --help`",
        ("train", "unet", "--epoch", "2"):
            "error: no such option --epoch (did you mean --epochs?); see `covseg train --help`",
        ("eval", "X", "--split", "bogus"): "error: --split bogus: 'bogus' is not one of 'val', 'train', "
                                           "'test', 'all'; see `covseg eval --help`",
        ("predict", "M", "I", "--batch-size", "abc"): "error: --batch-size abc: must be a valid integer, "
            "unable to parse string as an integer; see `covseg predict --help`",
        ("export", "R", "--opset", "3"):
            "error: --opset 3: must be greater than or equal to 13; see `covseg export --help`",
        ("train", "--epochs"): "error: option '--epochs' requires an argument; see `covseg train --help`",
        ("eval",): "error: missing argument 'TARGET'; see `covseg eval --help`",
        ("data", "info", "--zz"): "error: no such option --zz; see `covseg data info --help`",
        # an option of other commands says which (eval's --split NAME is not train's --split-file FILE)
        ("eval", "X", "--split-file", "s.json"): "error: no such option --split-file (it is an option of "
            "`covseg train` and `covseg benchmark`); see `covseg eval --help`",
        ("predict", "M", "I", "--epochs", "3"): "error: no such option --epochs (it is an option of "
            "`covseg train`, `covseg benchmark` and `covseg demo`); see `covseg predict --help`",
        ("nosuch",): "error: no such command 'nosuch'; see `covseg --help`",
    }
    for args, line in cases.items():
        result = runner.invoke(app, list(args), prog_name="covseg")
        assert result.exit_code == 2, (args, result.output)
        assert result.stdout == ""
        assert result.stderr.splitlines() == [line]


def test_help_and_no_arguments_still_print_the_help():
    assert runner.invoke(app, ["export", "--help"]).exit_code == 0
    no_args = runner.invoke(app, [], prog_name="covseg")
    assert "Usage: covseg" in no_args.output
    assert "error:" not in no_args.output


def test_installed_command_parse_error_is_one_line():
    result = subprocess.run([COVSEG, "export", "R", "--opset", "3"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: --opset 3: must be greater than or equal to 13; see `covseg export --help`"]


@pytest.mark.parametrize("command", [["train"], ["eval"], ["predict"], ["export"], ["benchmark"], ["demo"],
                                     ["data", "info"], ["data", "fetch"], []])
def test_help_at_80_columns_keeps_option_names_whole_and_cuts_nothing(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    names = {"train": "--foreground-oversampling", "benchmark": "--foreground-oversampling",
             "predict": "--save-probabilities", "eval": "--save-predictions"}
    if command and command[0] in names:
        assert names[command[0]] in result.output.split()


def _commands(command, path="covseg"):
    """Every command under ``command`` with its full name, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, f"{path} {name}")


def _shown_default(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(getattr(value, "value", value))


def test_every_option_and_argument_has_one_help_style():
    """Typer's `<str>`/`<int range>`/`<bool>` types, `[x>=1]` and `[default: x]` appear nowhere: every
    value option shows an upper-case metavar, every default is in its help as (default: x)."""
    import typer

    root = typer.main.get_command(app)
    checked = 0
    for path, command in _commands(root):
        ctx = typer.Context(command, info_name=path)
        for param in command.get_params(ctx):
            where = f"{path} {param.opts[0]}"
            shown = param.display_type_rich(ctx)
            name, help_text = param.get_help_record(ctx) or (param.opts[0], "")
            assert "<" not in name and "[default" not in help_text, (where, name, help_text)
            assert param._get_number_range_help_str() is None, where
            if param.param_type_name == "argument":
                assert shown is None and param.metavar and param.metavar.isupper(), where
                assert param.get_usage_pieces(ctx)[0].strip("[].") == param.metavar, where
            elif param.is_flag:
                assert not shown, (where, shown)
            else:
                assert shown and shown == shown.upper() and "<" not in shown, (where, shown)
            if (param.default is not None and param.default is not False and not param.hidden
                    and param.param_type_name == "option"):
                assert f"(default: {_shown_default(param.default)})" in help_text, (where, help_text)
            checked += 1
    assert checked > 100  # the generated settings of train and benchmark are walked too


def test_help_lines_read_like_the_generated_settings():
    result = runner.invoke(app, ["predict", "--help"], prog_name="covseg", env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    lines = [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]
    assert "Usage: covseg predict [OPTIONS] MODEL INPUTS..." in lines
    assert "--batch-size INTEGER Slices per onnxruntime run. (1..4096) (default: 8)" in lines
    assert "--help Show this message and exit." in lines
    result = runner.invoke(app, ["export", "--help"], prog_name="covseg", env={"COLUMNS": "120"})
    lines = [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]
    assert "Usage: covseg export [OPTIONS] TARGET" in lines
    assert "--opset INTEGER ONNX opset version. (>= 13) (default: 18)" in lines


def test_brackets_in_help_are_shown_not_read_as_markup():
    # Typer renders help as rich markup, where "[dicom]" would be a style tag and vanish.
    text = " ".join(runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert "needs covseg[dicom]" in text
