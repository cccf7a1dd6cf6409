"""benchmarks/recipe_ablation.py at toy size: two variants, one seed, one epoch, on the phantom."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    path = ROOT / "benchmarks" / "recipe_ablation.py"
    spec = importlib.util.spec_from_file_location("recipe_ablation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ablation_prints_the_table_and_tests_every_variant_on_the_same_slices(tmp_path, capsys):
    ablation = load_script()
    ablation.main(["--variants", "default", "ema", "--seeds", "0", "--epochs", "1", "--image-size", "32",
                   "--batch-size", "4", "--data", "phantom", "--dataset-option", "count=10",
                   "--dataset-option", "size=48", "--device", "cpu", "--out", str(tmp_path)])
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
    delta = float(table[3].split(" | ")[-2])
    rows = record["rows"]
    assert abs(delta - (rows["ema"]["test_miou"][0] - rows["default"]["test_miou"][0])) < 1e-3
