"""Outputs stay inside their folder, whatever the names of the inputs they are named after.

Every test snapshots the folder around the output folder (names, kinds, bytes, link targets)
before and after, and requires it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.cli import app
from covseg.commands.evaluate import PredictionWriter, png_names
from covseg.data.intensity import Normalisation
from covseg.export import export_model
from covseg.export.onnx_export import ExportSource, default_export_path, write_export
from covseg.onnx import ExportMetadata
from tests.test_predict import CLASS_HU, IntensityClassifier, assert_one_line_error

runner = CliRunner()

# File names that derive hostile case names: "..", ".", a hidden name, backslash and U+2215
# (division slash) where "/" cannot be, rich markup.
VOLUME_NAMES = {
    "...nii.gz": "case",
    ".hidden.nii.gz": "hidden",
    "a\\b.nii.gz": "a_b",
    "x\u2215y.nii.gz": "x_y",
    "[bold red]scan.nii.gz": "_bold_red_scan",
}
IMAGE_NAMES = {"[x].png": "_x_"}


def snapshot(folder: Path, skip: Path | None = None) -> dict[str, tuple]:
    """Every entry under ``folder`` except those under ``skip``: kind and content or link target."""
    entries: dict[str, tuple] = {}
    for path in sorted(folder.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        key = str(path.relative_to(folder))
        if path.is_symlink():
            entries[key] = ("link", str(path.readlink()))
        elif path.is_dir():
            entries[key] = ("dir",)
        else:
            entries[key] = ("file", path.read_bytes())
    return entries


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """The intensity classifier of test_predict, exported with covseg metadata (native size)."""
    metadata = ExportMetadata("intensity", 4, 3, CLASS_NAMES, Normalisation(), trained=True, source="tests")
    path = tmp_path_factory.mktemp("model") / "intensity.onnx"
    write_export(export_model(ExportSource(IntensityClassifier().eval(), metadata, "m"), trace_size=32), path)
    return path


@pytest.fixture
def area(tmp_path):
    """``parent/`` with inputs and the files an escaping case folder would hit, and ``parent/out``."""
    parent = tmp_path / "parent"
    inputs = parent / "inputs"
    inputs.mkdir(parents=True)
    truth = np.zeros((24, 20, 2), np.uint8)
    truth[2:10, 3:12, :] = 1
    truth[14:22, 5:9, 1] = 2
    for name in VOLUME_NAMES:
        nib.save(nib.Nifti1Image(np.asarray(CLASS_HU, np.int16)[truth], np.eye(4)), inputs / name)
    gray = np.full((16, 18), 200, np.uint8)
    gray[4:12, 4:12] = 145
    for name in IMAGE_NAMES:
        Image.fromarray(gray).save(inputs / name)
    # What `covseg predict ...nii.gz` overwrote or deleted in the parent before names were made safe.
    for name in ("labels.nii.gz", "report.json", "report.csv", "overlay.png", "overlays/slice_000.png"):
        (parent / name).parent.mkdir(exist_ok=True)
        (parent / name).write_bytes(b"not covseg's")
    return {"parent": parent, "inputs": inputs, "out": parent / "out", "truth": truth}


def predict(*arguments: object):
    return runner.invoke(app, ["predict", *map(str, arguments)])


def test_case_folders_from_hostile_file_names_stay_inside_out(model, area):
    parent, inputs, out = area["parent"], area["inputs"], area["out"]
    before = snapshot(parent, skip=out)
    files = [inputs / name for name in (*VOLUME_NAMES, *IMAGE_NAMES)]
    result = predict(model, *files, "--out", out, "--overlays", "all", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert snapshot(parent, skip=out) == before
    expected = {**VOLUME_NAMES, **IMAGE_NAMES}
    assert sorted(path.name for path in out.iterdir()) == sorted([*expected.values(), "summary.csv"])
    for name, case in VOLUME_NAMES.items():
        labels = np.asarray(nib.load(out / case / "labels.nii.gz").dataobj)
        np.testing.assert_array_equal(labels, area["truth"], err_msg=name)
        assert sorted(path.name for path in (out / case / "overlays").iterdir()) == [
            "slice_000.png",
            "slice_001.png",
        ]
    labels = np.asarray(Image.open(out / "_x_" / "labels.png"))
    assert set(np.unique(labels)) == {1, 2}
    # `..nii` is named "case" too: it needs --overwrite there, and even then stays in out/case.
    dotted = inputs / "..nii"
    nib.save(nib.Nifti1Image(np.asarray(CLASS_HU, np.int16)[area["truth"]], np.eye(4)), dotted)
    before, others = snapshot(parent, skip=out), snapshot(out, skip=out / "case")
    again = predict(model, dotted, "--out", out, "--overlays", "none")
    assert_one_line_error(again, f"{out / 'case'} exists (an earlier prediction?); pass --overwrite")
    replaced = predict(model, dotted, "--out", out, "--overlays", "none", "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    after = snapshot(out, skip=out / "case")
    summary = after.pop("summary.csv")[1].decode().splitlines()  # the summary of this run: its one case
    others.pop("summary.csv")
    assert [line.split(",")[0] for line in summary] == ["case", "case"]  # the header, then case "case"
    assert snapshot(parent, skip=out) == before and after == others
    assert list((out / "case" / "overlays").iterdir()) == []  # the stale overlays went, inside out


def test_inputs_whose_case_names_collide_are_refused(model, area, tmp_path):
    inputs, out = area["inputs"], area["out"]
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 1), np.int16), np.eye(4)), inputs / "..nii")
    both = predict(model, inputs / "...nii.gz", inputs / "..nii", "--out", out)
    assert_one_line_error(both, "would both write to the case folder 'case'")
    for name in ("Scan.nii.gz", "scan.nii.gz"):  # one folder on a case-insensitive file system
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 1), np.int16), np.eye(4)), tmp_path / name)
    cased = predict(model, tmp_path / "Scan.nii.gz", tmp_path / "scan.nii.gz", "--out", out)
    assert_one_line_error(cased, "would both write to the case folder 'Scan'")
    assert not out.exists()


def test_a_symlinked_out_is_written_through_and_nothing_around_it_changes(model, area, tmp_path):
    parent, inputs = area["parent"], area["inputs"]
    target = tmp_path / "elsewhere" / "target"
    target.mkdir(parents=True)
    (tmp_path / "elsewhere" / "labels.nii.gz").write_bytes(b"not covseg's")
    link = parent / "out-link"
    link.symlink_to(target, target_is_directory=True)
    before_parent, before_elsewhere = snapshot(parent), snapshot(tmp_path / "elsewhere", skip=target)
    result = predict(model, inputs / "...nii.gz", inputs / ".hidden.nii.gz", "--out", link)
    assert result.exit_code == 0, result.output
    assert snapshot(parent) == before_parent  # the link itself, not followed
    assert snapshot(tmp_path / "elsewhere", skip=target) == before_elsewhere
    assert sorted(path.name for path in target.iterdir()) == ["case", "hidden", "summary.csv"]
    assert (target / "case" / "labels.nii.gz").is_file()


def test_a_case_folder_that_links_outside_out_is_refused(model, area, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    out = area["out"]
    out.mkdir()
    (out / "hidden").symlink_to(outside, target_is_directory=True)
    result = predict(model, area["inputs"] / ".hidden.nii.gz", "--out", out, "--overwrite")
    assert_one_line_error(result, f"refusing to write {out / 'hidden'}: it resolves outside {out}")
    assert list(outside.iterdir()) == []


SLICE_IDS = ["../evil", "..", "...", ".hidden", "a/b", "a\\b", "[red]x[/red]", "Slice", "slice", "x\u2215y"]
SLICE_PNGS = [
    "_evil.png",
    "slice.png",
    "slice-2.png",
    "hidden.png",
    "a_b.png",
    "a_b-2.png",
    "_red_x_red_.png",
    "Slice-3.png",
    "slice-4.png",
    "x_y.png",
]


def test_eval_prediction_pictures_are_safe_distinct_and_stay_in_their_folder(tmp_path):
    assert png_names(SLICE_IDS) == SLICE_PNGS
    parent = tmp_path / "parent"
    folder = parent / "predictions"
    folder.mkdir(parents=True)
    (parent / "evil.png").write_bytes(b"not covseg's")
    before = snapshot(parent, skip=folder)
    writer = PredictionWriter(folder, SLICE_IDS)
    count = len(SLICE_IDS)
    images = torch.rand(count, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(count, 8, 8, dtype=torch.int64)
    predictions = torch.arange(count).remainder(4)[:, None, None].expand(count, 8, 8)
    writer.write_batch(images[:4], masks[:4], predictions[:4])
    writer.write_batch(images[4:], masks[4:], predictions[4:])
    assert writer.count == count
    assert snapshot(parent, skip=folder) == before
    assert sorted(path.name for path in folder.iterdir()) == sorted(SLICE_PNGS)
    for index, name in enumerate(SLICE_PNGS):  # each picture is its own slice's, none overwritten
        picture = np.asarray(Image.open(folder / name))
        assert picture.shape[0] > 8, name  # the panels over their caption
        right = picture[:8, 8 * 3 + 4 - 8 : 8 * 3 + 4]
        grey = picture[:8, :8]
        assert (index % 4 == 0) == np.array_equal(right, grey), name


def test_the_default_export_name_stays_in_the_exports_folder(tmp_path):
    metadata = ExportMetadata("unet", 4, 3, CLASS_NAMES, Normalisation())
    exports = tmp_path / "exports"
    for name, expected in (("unet-run1", "unet-run1.onnx"), ("unet-../../x", "unet-.._.._x.onnx"),
                           ("...", "model.onnx")):
        path = default_export_path(ExportSource(torch.nn.Identity(), metadata, name), exports)
        assert path == exports / expected
