"""benchmarks/recipe_ablation.py at toy size: two variants, one seed, one epoch, on the phantom."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

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
             "--dataset-option", "count=10", "--dataset-option", "size=48", "--device", "cpu"]


def test_ablation_prints_the_table_and_tests_every_variant_on_the_same_slices(tmp_path, capsys):
    ablation = load_script()
    ablation.main(["--variants", "default", "ema", "--epochs", "1", *ARGUMENTS, "--out", str(tmp_path)])
    output = capsys.readouterr().out
    table = [line for line in output.splitlines() if line.startswith("|")]
    assert table[0].startswith("| variant | runs | test mIoU | test 95% CI (mean) | lesion mIoU |")
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
            "device": "cpu", "workers": 0, "dataset_options": {"count": 10, "size": 48}}
    assert ablation.finished_run(ablation.variant_config("default", 0, base, tmp_path)) == first[0]
    for changed in ({"epochs": 2}, {"batch_size": 2}, {"dataset_options": {"count": 10, "size": 64}}):
        other = ablation.variant_config("default", 0, {**base, **changed}, tmp_path)
        assert ablation.finished_run(other) is None, changed


def test_a_mistake_is_one_error_line_as_in_covseg(tmp_path):
    # benchmarks/_cli.py: covseg's one-line errors and OSErrors end the script with exit code 2.
    script = ROOT / "benchmarks" / "recipe_ablation.py"
    bad_epochs = subprocess.run([sys.executable, str(script), "--variants", "default", "--epochs", "0",
                                 "--data", "phantom", "--out", str(tmp_path / "a")],
                                cwd=script.parent, capture_output=True, text=True)
    assert bad_epochs.returncode == 2
    assert bad_epochs.stderr.splitlines() == ["error: --epochs 0: must be between 1 and 100000"]
    under_a_file = tmp_path / "file"
    under_a_file.write_text("")
    bad_out = subprocess.run([sys.executable, str(script), "--variants", "default", "--epochs", "1",
                              "--data", "phantom", "--out", str(under_a_file / "runs")],
                             cwd=script.parent, capture_output=True, text=True)
    assert bad_out.returncode == 2 and len(bad_out.stderr.splitlines()) == 1
    assert bad_out.stderr.startswith(f"error: cannot use {under_a_file / 'runs'}: ")
    # A repeated seed would count one run twice; a bad device is found before --out is made.
    twice = subprocess.run([sys.executable, str(script), "--seeds", "0", "0", "--data", "phantom"],
                           cwd=script.parent, capture_output=True, text=True)
    assert twice.returncode == 2
    assert twice.stderr.splitlines()[-1].endswith("--seeds: 0 given twice; each runs once")
    device = subprocess.run([sys.executable, str(script), "--variants", "default", "--device", "tpu",
                             "--data", "phantom", "--out", str(tmp_path / "b")], cwd=script.parent,
                            capture_output=True, text=True)
    assert device.stderr.splitlines() == ["error: --device tpu: expected auto, cpu, cuda or cuda:N"]
    assert not (tmp_path / "b").exists()
