"""`covseg data list` and `covseg data info` through typer's CliRunner."""

from __future__ import annotations

from typer.testing import CliRunner

from covseg.cli import app

runner = CliRunner()
WIDE = {"COLUMNS": "200"}


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) >= 2:
            rows[cells[0]] = cells[1:]
    return rows


def test_data_list_shows_the_builtin_datasets_and_modules():
    result = runner.invoke(app, ["data", "list"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert rows["phantom"][:2] == ["no", "covseg_builtin.datasets.phantom"]
    assert rows["folder"][:2] == ["yes", "covseg_builtin.datasets.folder"]
    assert rows["medseg"][:2] == ["yes", "covseg_builtin.datasets.medseg"]


def test_data_info_on_the_real_slices_prints_the_true_counts(medseg100_dir):
    result = runner.invoke(app, ["data", "info", str(medseg100_dir)], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert rows["format"] == ["folder (detected from the path)"]
    assert rows["slices"] == ["80"] and rows["size (HxW)"] == ["512x512"]
    assert rows["intensity"] == ["8-bit, 0 .. 255"]
    assert rows["read as"] == ["8-bit grey levels /255 from uint8 PNG (uint8 as stored): 80 files"]
    assert rows["0"] == ["background", "19,497,431", "92.97%", "80"]
    assert rows["1"] == ["ground-glass", "941,484", "4.49%", "76"]
    assert rows["2"] == ["consolidation", "499,072", "2.38%", "61"]
    assert rows["3"] == ["effusion", "33,533", "0.16%", "24"]


def test_data_info_by_dataset_name_with_options():
    result = runner.invoke(app, ["data", "info", "phantom", "--dataset-option", "count=3",
                                 "--dataset-option", "size=64"], env=WIDE)
    assert result.exit_code == 0, result.output
    rows = _rows(result.stdout)
    assert rows["format"] == ["phantom"] and rows["slices"] == ["3"] and rows["size (HxW)"] == ["64x64"]
    assert rows["intensity"][0].startswith("Hounsfield units, -1")
    assert rows["lung masks"] == ["yes"] and rows["pixel size (mm)"] == ["5.47 x 5.47"]
    assert sum(int(rows[str(label)][1].replace(",", "")) for label in range(4)) == 3 * 64 * 64


def test_data_info_takes_the_data_as_train_and_eval_do(medseg100_dir):
    # --data PATH and --dataset NAME mean what they mean in train and eval; TARGET is short for them.
    by_option = runner.invoke(app, ["data", "info", "--data", str(medseg100_dir)], env=WIDE)
    assert by_option.exit_code == 0, by_option.output
    assert by_option.stdout == runner.invoke(app, ["data", "info", str(medseg100_dir)], env=WIDE).stdout
    by_name = runner.invoke(app, ["data", "info", "--dataset", "phantom", "--dataset-option", "count=2"],
                            env=WIDE)
    assert by_name.exit_code == 0, by_name.output
    assert _rows(by_name.stdout)["slices"] == ["2"]


def test_data_info_needs_the_data_once():
    both = runner.invoke(app, ["data", "info", "a", "--data", "b"])
    assert both.exit_code == 2
    assert both.stderr.splitlines() == ["error: give the data once: a or --data b, not both"]
    none = runner.invoke(app, ["data", "info"])
    assert none.exit_code == 2 and none.stderr.splitlines() == [
        "error: give a data path (PATH or --data PATH) or a data set (--dataset NAME); see "
        "`covseg data list`"]
