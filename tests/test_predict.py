"""`covseg predict`: label volumes with the input's geometry, lesion reports, real PNGs, bad input.

The geometry tests use an "intensity classifier": a 1x1 convolution whose argmax is the class of
the nearest of four intensities, so the labels of a noise-free phantom are known voxel by voxel.
"""

from __future__ import annotations

import csv
import json
import warnings

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from covseg import CLASS_NAMES
from covseg.cli import app
from covseg.core.entries import RESERVED_CLASS_NAMES, CTSlices
from covseg.core.errors import CovsegError
from covseg.data.dataset import SliceDataset
from covseg.data.intensity import Normalisation, normalise_channels
from covseg.data.loading import load_slices
from covseg.data.nifti import read_label_volume, read_volume
from covseg.evaluation.trained import load_trained_model
from covseg.export import export_model
from covseg.export.onnx_export import ExportSource, write_export
from covseg.inference.report import ALL_LESIONS, measure_lesions, summary_row
from covseg.onnx import ExportMetadata, read_metadata
from covseg.visualize import MIN_CAPTION_WIDTH, overlay
from tests.import_checks import run_covseg
from tests.test_export import save_unet_checkpoint

runner = CliRunner()
# HU of background, ground-glass, consolidation, effusion in the phantom; lung window -600/1500.
CLASS_HU = (-1000.0, -500.0, -200.0, 100.0)
ZOOMS = (0.8, 0.7, 2.5)
VOXEL_ML = 0.8 * 0.7 * 2.5 / 1000


class IntensityClassifier(nn.Module):
    """Logits 2*c*x - c^2 per class centre c: the argmax is the centre nearest to x (channel 0)."""

    def __init__(self, in_channels: int = 3):
        super().__init__()
        centres = torch.tensor([(hu + 1350.0) / 1500.0 for hu in CLASS_HU])
        self.conv = nn.Conv2d(in_channels, 4, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[:, 0, 0, 0] = 2 * centres
            self.conv.bias.copy_(-(centres**2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def foreign_onnx(path, in_channels: int = 3):
    """An ONNX file without covseg metadata, as another tool would write it."""
    axes = {"x": {0: "n", 2: "h", 3: "w"}, "y": {0: "n", 2: "h", 3: "w"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            IntensityClassifier(in_channels),
            (torch.zeros(1, in_channels, 8, 8),),
            path,
            dynamo=False,
            input_names=["x"],
            output_names=["y"],
            dynamic_axes=axes,
        )
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The intensity classifier with covseg metadata (native size and trained at 48), and without."""
    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for name, image_size in (("native", None), ("resized", 48)):
        metadata = ExportMetadata(
            "intensity",
            4,
            3,
            CLASS_NAMES,
            Normalisation(),
            image_size=image_size,
            trained=True,
            source="tests",
            epoch=1,
            val_miou=1.0,
        )
        result = export_model(ExportSource(IntensityClassifier().eval(), metadata, name), trace_size=32)
        paths[name] = folder / f"{name}.onnx"
        write_export(result, paths[name])
    paths["foreign"] = foreign_onnx(folder / "foreign.onnx")
    paths["foreign-1ch"] = foreign_onnx(folder / "foreign-1ch.onnx", in_channels=1)
    paths["foreign-2ch"] = foreign_onnx(folder / "foreign-2ch.onnx", in_channels=2)
    return paths


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    """A 70x60x4 HU volume (raw layout) with blobs of each class, its truth, a lung mask, an affine."""
    folder = tmp_path_factory.mktemp("phantom")
    truth = np.zeros((70, 60, 4), np.uint8)
    truth[5:30, 10:40, 0:3] = 1
    truth[40:60, 5:20, 1:4] = 2
    truth[45:66, 35:55, 2] = 3
    hu = np.asarray(CLASS_HU, np.int16)[truth]
    affine = np.array([[-0.8, 0.0, 0.0, 100.0], [0.0, 0.7, 0.0, -50.0], [0.0, 0.0, 2.5, 12.5], [0, 0, 0, 1]])
    image = nib.Nifti1Image(hu, affine)
    image.header.set_zooms(ZOOMS)
    nib.save(image, folder / "scan.nii.gz")
    lung = np.zeros(truth.shape, np.uint8)
    lung[0:50, :, :] = 1
    nib.save(nib.Nifti1Image(lung, affine), folder / "lung.nii.gz")
    stored_affine = nib.load(folder / "scan.nii.gz").affine  # the header keeps it as float32
    return {
        "scan": folder / "scan.nii.gz",
        "lung": folder / "lung.nii.gz",
        "truth": truth,
        "lung_mask": lung.astype(bool),
        "affine": stored_affine,
        "folder": folder,
    }


def predict(*arguments: object):
    return runner.invoke(app, ["predict", *map(str, arguments)])


def assert_one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert f"error: {message}" in text or message in text
    assert "Traceback" not in result.output
    assert sum(line.startswith("error:") for line in result.output.splitlines()) == 1


def test_volume_labels_keep_the_geometry_and_the_report_counts_them(models, phantom, tmp_path):
    out = tmp_path / "out"
    result = predict(
        models["native"],
        phantom["scan"],
        "--out",
        out,
        "--lung-mask",
        phantom["lung"],
        "--device",
        "cpu",
        "--batch-size",
        "3",
    )
    assert result.exit_code == 0, result.output
    assert "onnxruntime provider: CPUExecutionProvider" in result.output
    written = nib.load(out / "scan" / "labels.nii.gz")
    labels = np.asarray(written.dataobj)
    assert written.get_data_dtype() == np.uint8 and labels.shape == (70, 60, 4)
    np.testing.assert_array_equal(written.affine, phantom["affine"])
    assert written.header.get_zooms() == pytest.approx(ZOOMS)
    np.testing.assert_array_equal(labels, phantom["truth"])  # voxel by voxel, in the raw layout
    report = json.loads((out / "scan" / "report.json").read_text())
    assert report["voxel_ml"] == pytest.approx(VOXEL_ML)
    lung = phantom["lung_mask"]
    assert report["lung_voxels"] == lung.sum()
    rows = {row["class"]: row for row in csv.DictReader((out / "scan" / "report.csv").open())}
    for measure in report["classes"]:
        selected = labels > 0 if measure["label"] is None else labels == measure["label"]
        assert measure["voxels"] == selected.sum() > 0
        voxel_ml = np.prod(written.header.get_zooms()) / 1000
        assert measure["volume_ml"] == pytest.approx(selected.sum() * voxel_ml)
        assert measure["percent_of_lung"] == pytest.approx(100 * (selected & lung).sum() / lung.sum())
        assert int(rows[measure["name"]]["voxels"]) == measure["voxels"]
        assert float(rows[measure["name"]]["volume_ml"]) == pytest.approx(measure["volume_ml"], rel=1e-5)
    assert report["classes"][0]["volume_ml"] == pytest.approx(25 * 30 * 3 * VOXEL_ML)  # ground-glass blob
    # Overlays of the slices with lesions (all four), in display orientation.
    overlays = sorted((out / "scan" / "overlays").iterdir())
    assert [path.name for path in overlays] == [f"slice_{z:03d}.png" for z in range(4)]
    picture = np.asarray(Image.open(overlays[0]))
    hu_slice = read_volume(phantom["scan"])[0][0]
    shown = read_label_volume(out / "scan" / "labels.nii.gz")[0][0]  # the labels in display order
    expected = overlay(normalise_channels(hu_slice, "hu", Normalisation()), shown)
    np.testing.assert_array_equal(picture[:60, :70], expected)  # the slice at the top left
    assert picture.shape[0] > 60 + 2 * 16 and picture.shape[1] == MIN_CAPTION_WIDTH  # caption, legend


def test_a_model_trained_at_another_size_is_resized_there_and_back(models, phantom, tmp_path):
    result = predict(models["resized"], phantom["scan"], "--out", tmp_path, "--overlays", "none")
    assert result.exit_code == 0, result.output
    assert "input 48x48" in " ".join(result.output.split())
    written = nib.load(tmp_path / "scan" / "labels.nii.gz")
    labels = np.asarray(written.dataobj)
    assert labels.shape == (70, 60, 4) and labels.max() <= 3
    np.testing.assert_array_equal(written.affine, phantom["affine"])
    assert (labels == phantom["truth"]).mean() > 0.97  # only blob borders move through 48x48
    assert not (tmp_path / "scan" / "overlays").exists()


def test_measure_lesions_by_hand():
    labels = np.zeros((2, 4, 5), np.uint8)
    labels[0, :2, :] = 1  # 10 voxels
    labels[1, 3, :3] = 3  # 3 voxels
    lung = np.zeros(labels.shape, bool)
    lung[0] = True  # 20 lung voxels, holding all ground-glass
    report = measure_lesions("case", "in.nii", "m", labels, CLASS_NAMES, voxel_ml=0.002, lung=lung)
    assert [(m.name, m.voxels) for m in report.classes] == [
        ("ground-glass", 10),
        ("consolidation", 0),
        ("effusion", 3),
        ("all-lesions", 13),
    ]
    assert report.measure("ground-glass").volume_ml == pytest.approx(0.02)
    assert report.measure("ground-glass").percent_of_lung == pytest.approx(50.0)
    assert report.measure("effusion").percent_of_lung == 0.0
    assert report.measure("all-lesions").volume_ml == pytest.approx(0.026)
    assert report.lung_ml == pytest.approx(0.04)
    without = measure_lesions("case", "in.png", "m", labels[:1], CLASS_NAMES, voxel_ml=None)
    assert without.measure("ground-glass").volume_ml is None
    assert without.measure("ground-glass").percent_of_lung is None


def test_a_model_without_covseg_metadata_says_what_is_missing_then_runs_with_options(
    models, phantom, tmp_path
):
    missing = predict(models["foreign"], phantom["scan"], "--out", tmp_path)
    assert_one_line_error(
        missing,
        f"{models['foreign']} has no covseg metadata; pass --classes "
        "NAME,NAME,... (label 0 first) and --window LEVEL:WIDTH (or lung, mediastinal, "
        "bone) or --scale-8bit",
    )
    half = predict(models["foreign"], phantom["scan"], "--out", tmp_path, "--window", "-600:1500")
    assert_one_line_error(half, "has no covseg metadata; pass --classes NAME,NAME,... (label 0 first)")
    assert not tmp_path.joinpath("scan").exists()
    done = predict(
        models["foreign"],
        phantom["scan"],
        "--out",
        tmp_path,
        "--window",
        "-600:1500",
        "--classes",
        "bg,ggo,cons,eff",
    )
    assert done.exit_code == 0, done.output
    labels = np.asarray(nib.load(tmp_path / "scan" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(labels, phantom["truth"])
    names = [m["name"] for m in json.loads((tmp_path / "scan" / "report.json").read_text())["classes"]]
    assert names == ["ggo", "cons", "eff", "all-lesions"]


def test_channels_one_channel_models_take_grayscale_and_alpha_is_dropped(models, tmp_path):
    gray = np.full((40, 50), 200, np.uint8)
    gray[10:30, 10:30] = 145
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    colour = np.dstack([gray, np.zeros_like(gray), gray])
    Image.fromarray(colour).save(tmp_path / "colour.png")
    options = ["--classes", "a,b,c,d", "--scale-8bit"]
    one = predict(models["foreign-1ch"], tmp_path / "gray.png", "--out", tmp_path / "one", *options)
    assert one.exit_code == 0, one.output
    three = predict(models["foreign"], tmp_path / "alpha.png", "--out", tmp_path / "three", *options)
    assert three.exit_code == 0, three.output
    one_labels = np.asarray(Image.open(tmp_path / "one" / "gray" / "labels.png"))
    three_labels = np.asarray(Image.open(tmp_path / "three" / "alpha" / "labels.png"))
    np.testing.assert_array_equal(one_labels, three_labels)
    # 145/255 is nearest to class 1's intensity, 200/255 to class 2's.
    assert one_labels.shape == (40, 50) and set(np.unique(one_labels)) == {1, 2}
    colour_one = predict(models["foreign-1ch"], tmp_path / "colour.png", "--out", tmp_path / "c", *options)
    assert_one_line_error(colour_one, "colour.png is a colour image but the model takes 1 (grayscale)")
    two = predict(models["foreign-2ch"], tmp_path / "gray.png", "--out", tmp_path / "two", *options)
    assert_one_line_error(two, "takes 2 input channels; covseg feeds 3 (RGB or HU windows) or 1")
    assert not (tmp_path / "c").exists() and not (tmp_path / "two").exists()


def test_existing_outputs_need_overwrite_and_stale_overlays_go(models, phantom, tmp_path):
    first = predict(models["native"], phantom["scan"], "--out", tmp_path, "--overlays", "all")
    assert first.exit_code == 0, first.output
    labels = tmp_path / "scan" / "labels.nii.gz"
    before = labels.stat().st_mtime_ns
    again = predict(models["native"], phantom["scan"], "--out", tmp_path)
    assert_one_line_error(again, f"{tmp_path / 'scan'} exists (an earlier prediction?); pass --overwrite")
    assert labels.stat().st_mtime_ns == before
    replaced = predict(
        models["native"], phantom["scan"], "--out", tmp_path, "--overwrite", "--overlays", "none"
    )
    assert replaced.exit_code == 0, replaced.output
    assert list((tmp_path / "scan" / "overlays").iterdir()) == []
    assert sorted(path.name for path in (tmp_path / "scan").iterdir() if path.is_file()) == [
        "labels.nii.gz",
        "montage.png",  # --overlays none leaves the montage of the lesion slices (--no-montage does not)
        "report.csv",
        "report.json",
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_table_counts_pixels_of_images_and_voxels_of_volumes(models, phantom, tmp_path):
    """The shown table says what it counts; report.csv and summary.csv keep the field name ``voxels``."""
    image = np.full((40, 50), 200, np.uint8)
    image[10:30, 10:30] = 145
    Image.fromarray(image).save(tmp_path / "slice.png")
    wide = CliRunner(env={"COLUMNS": "200"})
    expected = {("slice.png",): "pixels", ("scan",): "voxels",
                ("scan", "slice.png"): "voxels (pixels for images)"}
    for names, header in expected.items():
        inputs = [phantom["scan"] if name == "scan" else tmp_path / name for name in names]
        out = tmp_path / ("out-" + "-".join(names))
        result = wide.invoke(app, ["predict", str(models["native"]), *map(str, inputs), "--out", str(out)])
        assert result.exit_code == 0, result.output
        headers = [line for line in result.output.splitlines() if "case" in line and "volume (ml)" in line]
        assert len(headers) == 1, result.output
        assert [cell.strip() for cell in headers[0].strip("┃ ").split("┃")][2] == header
        assert "all-lesions_voxels" in (out / "summary.csv").read_text().splitlines()[0]


def test_a_class_named_like_a_column_covseg_derives_is_refused(models, phantom, tmp_path):
    """--classes bg,all-lesions,... once gave summary.csv one set of all-lesions_* columns holding
    the total, the class's own count lost; each class must keep its own columns."""
    out = tmp_path / "out"
    window = ("--window", "-600:1500")
    clash = predict(models["foreign"], phantom["scan"], "--out", out, *window,
                    "--classes", "bg,all-lesions,b,c")
    assert clash.exit_code == 2 and clash.output.splitlines()[-1] == (
        "error: --classes bg,all-lesions,b,c: class 'all-lesions' takes a name covseg reports under "
        "itself (all-lesions, voxel, lung, left_lung, right_lung); rename it")
    for classes, message in (("bg,a,a,c", "class 'a' is named twice"),
                             ("bg,A,a,c", "class 'a' is the same name as 'A' (case aside)"),
                             ("bg,a b,a_b,c", "class name 'a b' is not a name: use letters, digits "
                              "and . _ + - (e.g. 'ground-glass')")):
        refused = predict(models["foreign"], phantom["scan"], "--out", out, *window, "--classes", classes)
        assert refused.exit_code == 2
        assert refused.output.splitlines()[-1] == f"error: --classes {classes}: {message}"
    assert not out.exists()


def test_summary_columns_of_classes_never_overwrite_the_fixed_ones():
    labels = np.array([[0, 1], [2, 3]], np.uint8)
    row = summary_row(measure_lesions("c", "c.png", "m", labels, ("background", "a", "b", "c"), 0.5))
    assert (row["a_voxels"], row["b_voxels"], row["c_voxels"], row["all-lesions_voxels"]) == (1, 1, 1, 3)
    # Every fixed column that a class's <name>_voxels/_ml/_percent_of_lung could spell is reserved.
    suffixes = ("_voxels", "_ml", "_percent_of_lung")
    classes = {f"{name}{suffix}" for name in ("a", "b", "c", ALL_LESIONS) for suffix in suffixes}
    stems = {column.removesuffix(suffix) for column in row.keys() - classes for suffix in suffixes
             if column.endswith(suffix)}
    assert stems == set(RESERVED_CLASS_NAMES) - {ALL_LESIONS}
    slipped = measure_lesions("c", "c.png", "m", labels, ("background", "lung", "b", "c"), 0.5)
    with pytest.raises(CovsegError) as refused:
        summary_row(slipped)
    assert str(refused.value) == ("c: class 'lung' would overwrite the summary.csv column lung_ml; "
                                  "rename the class")


def test_bad_inputs_get_one_line_and_no_output(models, phantom, tmp_path):
    out = tmp_path / "out"
    not_onnx = tmp_path / "model.onnx"
    not_onnx.write_text("this is text, not a model\n")
    four_d = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 3, 2), np.int16), np.eye(4)), four_d)
    truncated = tmp_path / "cut.nii.gz"
    truncated.write_bytes(phantom["scan"].read_bytes()[:300])
    corrupt_png = tmp_path / "broken.png"
    corrupt_png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    other_shape = tmp_path / "lung-small.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((8, 8, 4), np.uint8), phantom["affine"]), other_shape)
    (tmp_path / "notes.txt").write_text("x")
    native, scan = models["native"], phantom["scan"]
    cases = [
        ((not_onnx, scan), f"{not_onnx} is not an ONNX model onnxruntime can run"),
        ((native, four_d), f"{four_d} is 4-D with shape (8, 8, 3, 2): expected a 3-D volume"),
        ((native, truncated), f"{truncated} is not a readable NIfTI file"),
        ((native, corrupt_png), f"{corrupt_png} is not a readable image"),
        ((native, tmp_path / "notes.txt"), "notes.txt is not an input covseg can read"),
        ((native, tmp_path / "absent.nii.gz"), "absent.nii.gz does not exist"),
        ((native, scan, "--lung-mask", other_shape), "has shape (8, 8, 4) but"),
        ((native, scan, "--lung-mask", corrupt_png),
         f"--lung-mask {corrupt_png}: expected a NIfTI file (.nii, .nii.gz) with the volume's geometry"),
        ((native, scan, "--lung-mask", truncated), f"--lung-mask {truncated} is not a readable NIfTI file"),
        (
            (native, scan, "--lung-mask", other_shape, "--lung-mask", other_shape),
            "2 --lung-mask file(s) for 1 volume(s)",
        ),
        ((native, scan, "--classes", "a,b,c"), "3 class names for"),
        ((native, scan, "--window", "lung", "--scale-8bit"), "--window and --scale-8bit exclude each other"),
        ((native, scan, "--window", "soft"), "window 'soft' is neither a preset"),
        ((tmp_path / "run-that-is-not", scan), "does not exist; give an .onnx file, a run folder"),
    ]
    for arguments, message in cases:
        result = predict(*arguments, "--out", out)
        assert_one_line_error(result, message)
        assert not out.exists() or not any(out.rglob("*")), message


def test_predict_on_an_onnx_file_runs_with_torch_and_albumentations_unimportable(models, phantom, tmp_path):
    """An ONNX model needs onnxruntime, not torch: predict in a process where torch cannot load."""
    image = np.full((40, 50), 200, np.uint8)
    image[10:30, 10:30] = 145
    Image.fromarray(image).save(tmp_path / "slice.png")
    inputs = (phantom["scan"], tmp_path / "slice.png")
    blocked = ("torch", "torchvision", "timm", "albumentations")
    run = run_covseg("predict", models["resized"], *inputs, "--out", tmp_path / "free", "--overlays", "all",
                     blocked=blocked)
    assert run.returncode == 0, run.stderr
    assert run.attempted == [] and not set(run.loaded) & set(blocked)
    # The same prediction in this process, where torch is loaded: identical files.
    here = predict(models["resized"], *inputs, "--out", tmp_path / "here", "--overlays", "all")
    assert here.exit_code == 0, here.output
    free_labels = np.asarray(nib.load(tmp_path / "free" / "scan" / "labels.nii.gz").dataobj)
    np.testing.assert_array_equal(free_labels, nib.load(tmp_path / "here" / "scan" / "labels.nii.gz").dataobj)
    assert (free_labels == phantom["truth"]).mean() > 0.97  # resized to 48x48 and back
    for name in ("slice/labels.png", "slice/overlay.png", "scan/overlays/slice_000.png", "scan/report.csv"):
        assert (tmp_path / "free" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_where_there_is_none(models, phantom, tmp_path):
    result = predict(models["native"], phantom["scan"], "--out", tmp_path, "--device", "cuda")
    assert_one_line_error(result, "--device cuda: no CUDA GPU is usable by onnxruntime on this machine")


def upsampled_labels(logits: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """Labels (N, H, W) from logits (N, C, h, w): softmax, bilinear resize to ``size``, argmax."""
    channels_last = torch.softmax(logits, dim=1).permute(0, 2, 3, 1).contiguous().numpy()
    resized = [cv2.resize(item, size[::-1], interpolation=cv2.INTER_LINEAR) for item in channels_last]
    return np.stack([item.argmax(axis=2).astype(np.uint8) for item in resized])


def pytorch_reference(model: nn.Module, images: list[np.ndarray], intensity: str) -> np.ndarray:
    """Labels through the training input path (SliceDataset at 64x64) and PyTorch, the softmax
    resized back bilinearly."""
    ids = [str(index) for index in range(len(images))]
    masks = [np.zeros(image.shape[:2], np.uint8) for image in images]
    dataset = SliceDataset(
        CTSlices(ids, images, masks, intensity, "test"), ids, Normalisation(), image_size=64
    )
    with torch.inference_mode():
        logits = model(torch.stack([dataset[index][0] for index in range(len(ids))]))
    return upsampled_labels(logits, images[0].shape[:2])


def test_a_checkpoint_is_exported_on_the_fly_and_predicts_like_pytorch(tmp_path, phantom, medseg100_dir):
    checkpoint = tmp_path / "best.pt"
    model = save_unet_checkpoint(checkpoint, 64, Normalisation()).eval()
    pngs = [medseg100_dir / "images" / name for name in ("medseg_001.png", "medseg_002.png")]
    result = predict(checkpoint, phantom["scan"], *pngs, "--out", tmp_path / "out", "--overlays", "none")
    assert result.exit_code == 0, result.output
    assert f"exported {checkpoint} to ONNX in memory" in " ".join(result.output.split())
    labels, _ = read_label_volume(tmp_path / "out" / "scan" / "labels.nii.gz")  # display order
    expected = pytorch_reference(model, list(read_volume(phantom["scan"])[0]), "hu")
    assert len(np.unique(expected)) >= 2  # not one class everywhere
    assert (labels == expected).mean() > 0.999
    images = [np.asarray(Image.open(path)) for path in pngs]
    for path, reference in zip(pngs, pytorch_reference(model, images, "uint8"), strict=True):
        predicted = np.asarray(Image.open(tmp_path / "out" / path.stem / "labels.png"))
        assert predicted.shape == (512, 512) and len(np.unique(reference)) >= 2
        assert (predicted == reference).mean() > 0.999  # real slices, 512 -> 64 -> 512


@pytest.fixture(scope="module")
def trained_run(medseg100_dir, tmp_path_factory):
    """A narrow unet (``base_channels=8``: the run's own width is what predict rebuilds) trained one
    epoch at 64x64 on 6 real MedSeg slices (linked, not copied)."""
    from covseg.training import TrainConfig, train

    data = tmp_path_factory.mktemp("medseg6")
    for sub in ("images", "masks"):
        (data / sub).mkdir()
        for path in sorted((medseg100_dir / sub).glob("*.png"))[:6]:
            (data / sub / path.name).symlink_to(path)
    runs = tmp_path_factory.mktemp("runs")
    config = TrainConfig.from_recipe(
        "unet",
        model_options={"base_channels": 8},
        data=str(data),
        epochs=1,
        image_size=64,
        batch_size=3,
        workers=0,
        device="cpu",
        out=str(runs),
        val_fraction=0.34,
    )
    return train(config), data


def test_real_pngs_with_a_briefly_trained_run(trained_run, tmp_path):
    run_dir, data = trained_run
    result = predict(run_dir, data / "images", "--out", tmp_path, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    slices = load_slices("folder", data)
    trained = load_trained_model(run_dir)
    dataset = SliceDataset(slices, slices.ids, trained.normalisation, image_size=64)
    for index, name in enumerate(slices.ids):
        labels = np.asarray(Image.open(tmp_path / name / "labels.png"))
        assert labels.shape == (512, 512) and labels.max() <= 3
        with torch.inference_mode():
            logits = trained.model(dataset[index][0][None])
        expected = upsampled_labels(logits, (512, 512))[0]
        # A one-epoch model may predict one class nearly everywhere: the label-by-label parity with
        # a model whose labels vary is in test_a_checkpoint_is_exported_on_the_fly_and_predicts_like_pytorch.
        assert (labels == expected).mean() > 0.999
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["voxel_ml"] is None
        assert [m["voxels"] for m in report["classes"][:3]] == [int((labels == k).sum()) for k in (1, 2, 3)]
        picture = np.asarray(Image.open(tmp_path / name / "overlay.png"))
        assert picture.shape[:2] > (512, 512) and picture.shape[1] == 512  # the caption below


def test_read_case_errors_are_covseg_errors(tmp_path):
    from covseg.inference.inputs import discover_cases

    with pytest.raises(CovsegError, match="holds no NIfTI volumes"):
        discover_cases([tmp_path])
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.int16), np.eye(4)), tmp_path / "sub" / "a.nii.gz")
    with pytest.raises(CovsegError, match="would both write to the case folder 'a'"):
        discover_cases([tmp_path / "a.png", tmp_path / "sub"])


def test_a_model_is_never_fed_the_other_intensity_kind(trained_run, phantom, tmp_path):
    """A model trained on 8-bit PNGs (/255) fed a HU volume, or the reverse, returns labels whose
    volumes mean nothing: refused in one line naming the input, the model and both kinds."""
    run_dir, _ = trained_run  # unet trained on real 8-bit MedSeg PNGs
    result = predict(run_dir, phantom["scan"], "--out", tmp_path / "out")
    assert_one_line_error(result, f"{phantom['scan']} holds Hounsfield units but")
    assert "was trained on 8-bit grey levels" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "scan").exists()
    # The model's banner says what it was trained on, not the HU window it never saw.
    exported = tmp_path / "png-model.onnx"
    assert runner.invoke(app, ["export", str(run_dir), "--out", str(exported)]).exit_code == 0
    metadata = read_metadata(exported)
    assert metadata.intensity == "uint8"
    assert "8-bit images /255 (trained on 8-bit images: no HU window)" in metadata.describe()
    card = (tmp_path / "png-model.MODEL.md").read_text()
    assert "8-bit images /255 (trained on 8-bit images: no HU window)" in card and "L-600" not in card
    # covseg eval refuses HU data for it as well.
    result = runner.invoke(app, ["eval", str(run_dir), "--dataset", "phantom", "--dataset-option", "count=4",
                                 "--dataset-option", "size=64"])
    assert_one_line_error(result, "holds Hounsfield units but")


def test_the_intensity_kind_round_trips_and_old_exports_are_not_checked():
    from covseg.data.intensity import check_input_kind

    props = ExportMetadata("unet", 4, 3, ("a", "b", "c", "d"), Normalisation(), intensity="hu").to_props()
    assert props["covseg.intensity"] == "hu"
    assert ExportMetadata.from_props(props, "m.onnx").intensity == "hu"
    del props["covseg.intensity"]
    assert ExportMetadata.from_props(props, "m.onnx").intensity is None  # older export: unknown
    check_input_kind(None, "uint8", "x.png", "old.onnx")  # unknown: not checked
    check_input_kind("hu", "hu", "x.nii.gz", "m.onnx")
    with pytest.raises(CovsegError, match=r"x\.png holds 8-bit grey levels but m\.onnx was trained on Houn"):
        check_input_kind("hu", "uint8", "x.png", "m.onnx")
    with pytest.raises(CovsegError, match="intensity 'float'"):
        ExportMetadata("unet", 4, 3, ("a", "b", "c", "d"), Normalisation(), intensity="float")


def _png(path, value: int = 90) -> None:
    Image.fromarray(np.full((32, 32), value, np.uint8)).save(path)


def test_a_failing_case_is_listed_and_the_others_are_predicted(models, tmp_path):
    inputs, out = tmp_path / "mixed", tmp_path / "out"
    inputs.mkdir()
    _png(inputs / "a.png")
    _png(inputs / "b.png")
    (inputs / "b.png").write_bytes((inputs / "b.png").read_bytes()[:60])  # a truncated PNG
    _png(inputs / "c.png")
    result = predict(models["native"], inputs, "--out", out)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and errors[0].startswith(f"error: b: {inputs / 'b.png'} is not a readable image")
    assert errors[1] == "error: 1 of 3 cases failed (listed above)"
    assert "Traceback" not in result.output
    with open(out / "summary.csv", newline="") as handle:
        assert sorted({row["case"] for row in csv.DictReader(handle)}) == ["a", "c"]
    assert sorted(path.name for path in out.iterdir()) == ["a", "c", "summary.csv"]


def test_hidden_files_in_a_folder_are_skipped_with_a_warning(models, tmp_path):
    inputs, out = tmp_path / "scans", tmp_path / "out"
    inputs.mkdir()
    _png(inputs / "a.png")
    _png(inputs / "._a.png")  # what macOS leaves beside each file on a foreign disk
    _png(inputs / ".b.png")
    result = predict(models["native"], inputs, "--out", out)
    assert result.exit_code == 0, result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("warning:")] == [
        f"warning: {inputs}: skipped 2 hidden files whose names start with a dot, e.g. ._a.png (such as "
        "macOS ._ files); give one by name to predict it"]
    assert sorted(path.name for path in out.iterdir()) == ["a", "summary.csv"]

    (inputs / "a.png").unlink()
    only_hidden = predict(models["native"], inputs, "--out", tmp_path / "out2")
    assert_one_line_error(only_hidden, f"{inputs} holds no NIfTI volumes")
    assert only_hidden.stderr.strip().endswith(
        f"; {inputs}: skipped 2 hidden files whose names start with a dot, e.g. ._a.png (such as macOS ._ "
        "files); give one by name to predict it")
