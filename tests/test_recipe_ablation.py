"""benchmarks/recipe_ablation.py at toy size: two variants, one seed, one epoch, on the phantom, with a
narrow unet (``--model-option base_channels=8``: a full one spends its time writing 370 MB checkpoints);
and benchmarks/_cli.py, the entry point the benchmark scripts share."""

from __future__ import annotations

import importlib.util
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import typer

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "benchmarks" / "recipe_ablation.py"
    if str(path.parent) not in sys.path:  # its helpers (_cli.py), as when it runs from benchmarks/
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("recipe_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ARGUMENTS = ["--seeds", "0", "--image-size", "32", "--batch-size", "4", "--data", "phantom",
             "--dataset-option", "count=10", "--dataset-option", "size=48", "--device", "cpu",
             "--model-option", "base_channels=8"]


def test_ablation_prints_the_table_and_tests_every_variant_on_the_same_slices(tmp_path, capsys):
    ablation = load_script()
    ablation.main(["--variants", "default", "ema", "--epochs", "1", *ARGUMENTS, "--out", str(tmp_path)])
    output = capsys.readouterr().out
    table = [line for line in output.splitlines() if line.startswith("|")]
    assert table[0].startswith("| variant | runs | test mIoU | test 95% CI (mean) | lesion mIoU |")
    assert "\nunet base_channels=8, 1 epochs, 32 px" in output
    assert [line.split(" | ")[0] for line in table[2:]] == ["| default", "| ema"]
    assert table[2].split(" | ")[-2:] == ["-", "- |"]  # default is the baseline of the difference
    record = json.loads((tmp_path / "ablation.json").read_text())
    tested = set()
    for variant, runs in record["runs"].items():
        summary = json.loads((Path(runs[0]) / "summary.json").read_text())
        config = json.loads((Path(runs[0]) / "config.json").read_text())
        assert summary["test"]["slices"] == 2
        tested.add(tuple(json.loads((Path(runs[0]) / "split.json").read_text())["test_ids"]))
        assert config["ema_decay"] == (ablation.EMA_DECAY if variant == "ema" else None)
        assert config["model_options"] == {"base_channels": 8}
    assert len(tested) == 1  # one test set for every variant
    # The difference is the paired one: seed-averaged mIoU of ema minus default, on the same slices.
    delta_cell, verdict = table[3].split(" | ")[-2:]
    paired = record["differences_vs_default"]["ema"]
    rows = record["rows"]
    assert abs(paired["delta"] - (rows["ema"]["test_miou"][0] - rows["default"]["test_miou"][0])) < 1e-9
    low, high = paired["interval"]
    assert delta_cell == f"{paired['delta']:+.3f} [{low:+.3f}, {high:+.3f}]"
    assert verdict == ("better |" if low > 0 else "worse |" if high < 0 else "no difference |")


def test_a_rerun_reuses_the_finished_runs_with_the_same_settings_only(tmp_path, capsys):
    ablation = load_script()
    ablation.main(["--variants", "default", "--epochs", "1", *ARGUMENTS, "--out", str(tmp_path)])
    first = list((tmp_path / "default" / "seed0" / "unet").iterdir())
    capsys.readouterr()
    ablation.main(["--variants", "default", "--epochs", "1", *ARGUMENTS, "--out", str(tmp_path)])
    assert f"({first[0]}, reused)" in capsys.readouterr().out
    assert list((tmp_path / "default" / "seed0" / "unet").iterdir()) == first
    # Another schedule, batch or data setting is another run: nothing to reuse.
    base = {"epochs": 1, "image_size": 32, "batch_size": 4, "split_file": str(tmp_path / "split.json"),
            "device": "cpu", "workers": 0, "dataset_options": {"count": 10, "size": 48},
            "model_options": ["base_channels=8"]}
    assert ablation.finished_run(ablation.variant_config("default", 0, base, tmp_path)) == first[0]
    for changed in ({"epochs": 2}, {"batch_size": 2}, {"dataset_options": {"count": 10, "size": 64}},
                    {"model_options": ["base_channels=4"]}):
        other = ablation.variant_config("default", 0, {**base, **changed}, tmp_path)
        assert ablation.finished_run(other) is None, changed
    full_width = {key: value for key, value in base.items() if key != "model_options"}
    assert ablation.finished_run(ablation.variant_config("default", 0, full_width, tmp_path)) is None


def run_in_process(arguments: list[str], capsys) -> tuple[int, str]:
    """The script's own entry point, ``run_script(main)``, in this process: (exit code, stderr)."""
    ablation = load_script()
    from _cli import run_script  # benchmarks/_cli.py, on sys.path once load_script ran

    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        run_script(ablation.main, arguments)
    return ended.value.code, capsys.readouterr().err


def test_a_mistake_is_one_error_line_as_in_covseg(tmp_path, capsys):
    # benchmarks/_cli.py: covseg's one-line errors and OSErrors end the script with exit code 2. One
    # real process shows the exit code and the stderr of `python recipe_ablation.py`; the other
    # mistakes go through the same entry point in this process (no second torch start-up).
    script = ROOT / "benchmarks" / "recipe_ablation.py"
    bad_epochs = subprocess.run([sys.executable, str(script), "--variants", "default", "--epochs", "0",
                                 "--data", "phantom", "--out", str(tmp_path / "a")],
                                cwd=script.parent, capture_output=True, text=True)
    assert bad_epochs.returncode == 2
    assert bad_epochs.stderr.splitlines() == ["error: --epochs 0: must be between 1 and 100000"]
    under_a_file = tmp_path / "file"
    under_a_file.write_text("")
    code, stderr = run_in_process(["--variants", "default", "--epochs", "1", "--data", "phantom", "--out",
                                   str(under_a_file / "runs")], capsys)
    assert code == 2 and len(stderr.splitlines()) == 1
    assert stderr.startswith(f"error: cannot use {under_a_file / 'runs'}: ")
    # A repeated seed would count one run twice (argparse's own exit code 2); a bad device is found
    # before --out is made.
    code, stderr = run_in_process(["--seeds", "0", "0", "--data", "phantom"], capsys)
    assert code == 2
    assert stderr.splitlines()[-1].endswith("--seeds: 0 given twice; each runs once")
    code, stderr = run_in_process(["--variants", "default", "--device", "tpu", "--data", "phantom", "--out",
                                   str(tmp_path / "b")], capsys)
    assert code == 2 and stderr.splitlines() == ["error: --device tpu: expected auto, cpu, cuda or cuda:N"]
    assert not (tmp_path / "b").exists()
    # What only building the model or splitting the data shows is checked before --out is made too,
    # and a --model-option mistake is named as covseg train names it.
    tiny = ["--variants", "default", "--seeds", "0", "--epochs", "1", "--image-size", "32", "--data",
            "phantom", "--dataset-option", "count=10", "--dataset-option", "size=48", "--device", "cpu"]
    for extra, message in (
        (["--model-option", "base_channels=0"], "error: unet option base_channels=0: must be an integer "
                                                "between 1 and 128"),
        (["--model-option", "x"], "error: --model-option: 'x' is not KEY=VALUE (e.g. base_channels=32)"),
        (["--batch-size", "8"], "error: --batch-size 8 is larger than the training set (6 slices after the "
                                "validation and test slices are held out); use --batch-size 6 or less, or "
                                "hold out fewer slices"),
    ):
        code, stderr = run_in_process([*tiny, *extra, "--out", str(tmp_path / "c")], capsys)
        assert code == 2 and stderr.splitlines() == [message], extra
        assert not (tmp_path / "c").exists(), extra


TYPER_SCRIPTS = ("compare_recipes", "data_pipeline_speed", "inference_speed", "precision_compare",
                 "startup_time", "train_speed", "tta_effect", "volume_speed")


@pytest.mark.parametrize("name", TYPER_SCRIPTS)
def test_typer_scripts_help_reads_like_covseg_help(name, monkeypatch, capsys):
    # Each script's own `python NAME.py --help` (its __main__ block), in this process: no second torch
    # start-up. Typer's `<str>`, `[x>=1]` and `[default: x]` appear nowhere; each option with a default
    # shows it as (default: x), and each option that takes a value an upper-case metavar.
    path = ROOT / "benchmarks" / f"{name}.py"
    monkeypatch.syspath_prepend(str(path.parent))  # its helpers (_cli.py), as when it runs from benchmarks/
    monkeypatch.setenv("COLUMNS", "240")  # long defaults (inference_speed's --models) on one line
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    with pytest.raises(SystemExit) as ended:
        runpy.run_path(str(path), run_name="__main__")
    assert ended.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert shown.startswith(f"Usage: {name}.py [OPTIONS]"), shown
    for typer_style in ("<str>", "<bool>", "<int>", "<float>", "<path>", "<list", "[default:", "[x>="):
        assert typer_style not in shown, typer_style
    script = runpy.run_path(str(path), run_name=f"benchmark_{name}")
    command = typer.main.get_command(script["typer_app"](script["main"]))
    options = [param for param in command.params if param.param_type_name == "option"]
    assert options
    for param in options:
        where = f"{name} {param.opts[0]}"
        if param.is_flag:
            assert not param.metavar, where
        else:
            assert param.metavar and param.metavar == param.metavar.upper(), where
        if param.default is not None and param.default is not False:
            assert f"(default: {param.default})" in shown, where
