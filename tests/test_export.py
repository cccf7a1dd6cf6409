"""`covseg export`: all seven models to ONNX with dynamic batch/H/W, parity with PyTorch, metadata.

Every model is exported at full width (64x64 trace on the CPU): that is the dynamic-axes test's
subject. The tests of the command's options, files and metadata export a narrow unet checkpoint
(``base_channels=8``) or, where the target is a model name, the tiny test plugin
(tests/tiny_model.py): the same code paths at a fraction of the trace and file size.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from typer.testing import CliRunner

from covseg import CLASS_NAMES, __version__
from covseg.checkpoint import save_checkpoint
from covseg.cli import app
from covseg.core.errors import CovsegError
from covseg.core.registry import create_model
from covseg.data.intensity import Normalisation
from covseg.export import export_model, export_onnx, load_export_source
from covseg.export.onnx_export import ExportSource
from covseg.onnx import ExportMetadata, OnnxSegmenter, read_metadata
from tests.test_models import MODEL_NAMES
from tests.tiny_model import tiny_model_installed

runner = CliRunner()
MODELS = MODEL_NAMES
TOLERANCE = 1e-3
NARROW_UNET = {"base_channels": 8}


@pytest.fixture(params=MODELS)
def model_name(request) -> str:
    return request.param


def test_every_model_exports_with_dynamic_batch_height_and_width(model_name):
    source = load_export_source(model_name)
    result = export_model(source, trace_size=64)
    # Checked at the trace size and at an odd second size and batch (not divisible by 32).
    assert [check.shape for check in result.checks] == [(1, 3, 64, 64), (2, 3, 73, 89)]
    for check in result.checks:
        assert check.passed and check.max_abs_diff <= TOLERANCE * max(1.0, check.logit_scale)
    graph = onnx.load_from_string(result.model_bytes).graph
    dims = [dim.dim_param or dim.dim_value for dim in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    # A third size and batch, run here rather than by the exporter's own check.
    segmenter = OnnxSegmenter(result.model_bytes, device="cpu")
    inputs = np.random.default_rng(1).random((3, 3, 40, 100), dtype=np.float32)
    with torch.inference_mode():
        expected = source.model(torch.from_numpy(inputs)).numpy()
    actual = segmenter.logits(inputs)
    assert actual.shape == (3, 4, 40, 100)
    assert np.abs(actual - expected).max() <= TOLERANCE * max(1.0, np.abs(expected).max())


def save_unet_checkpoint(path, image_size: int | None, normalisation: Normalisation) -> torch.nn.Module:
    """Save an untrained (seeded) narrow unet (``base_channels=8``, recorded in its
    ``model_options``) as a covseg checkpoint with the fields training writes.

    Its head is redrawn with unit-variance weights and no bias: a fresh head predicts one class
    everywhere (at this width, its bias outweighs the features), which would let label comparisons
    pass trivially.
    """
    torch.manual_seed(0)
    model = create_model("unet", **NARROW_UNET)
    torch.nn.init.normal_(model.head.weight, std=1.0)
    torch.nn.init.zeros_(model.head.bias)
    save_checkpoint(
        {
            "model_name": "unet",
            "num_classes": 4,
            "in_channels": 3,
            "class_names": list(CLASS_NAMES),
            "model_options": dict(NARROW_UNET),
            "normalisation": normalisation.to_dict(),
            "image_size": image_size,
            "state_dict": model.state_dict(),
            "epoch": 7,
            "metrics": {"miou": 0.6125, "pixel_accuracy": 0.95},
            "run_dir": None,
        },
        path,
    )
    return model


def test_metadata_props_round_trip_and_name_what_is_wrong():
    metadata = ExportMetadata(
        "m",
        2,
        1,
        ("background", "lesion"),
        Normalisation(((40.0, 400.0),)),
        image_size=96,
        trained=True,
        source="runs/m/1",
        epoch=3,
        val_miou=0.5,
        extra={"note": "kept"},
    )
    props = metadata.to_props()
    assert props["covseg.note"] == "kept" and props["covseg.image_size"] == "96"
    assert ExportMetadata.from_props(props, "m.onnx") == metadata
    with pytest.raises(
        CovsegError, match=r"m\.onnx has incomplete covseg metadata: covseg\.class_names missing"
    ):
        ExportMetadata.from_props({k: v for k, v in props.items() if k != "covseg.class_names"}, "m.onnx")
    with pytest.raises(CovsegError, match=r"m\.onnx has malformed covseg metadata"):
        ExportMetadata.from_props({**props, "covseg.num_classes": "three"}, "m.onnx")
    with pytest.raises(CovsegError, match=r"m\.onnx has malformed covseg metadata: m: 2 class names for 3"):
        ExportMetadata.from_props({**props, "covseg.num_classes": "3"}, "m.onnx")
    clash = {**props, "covseg.class_names": '["background", "all-lesions"]'}
    with pytest.raises(CovsegError) as refused:  # its all-lesions_* columns would hold the total
        ExportMetadata.from_props(clash, "m.onnx")
    assert str(refused.value) == (
        "m.onnx has malformed covseg metadata: m: class 'all-lesions' takes a name covseg reports under "
        "itself (all-lesions, voxel, lung, left_lung, right_lung); rename it")


@pytest.fixture(scope="module")
def unet_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("checkpoint") / "epoch7.pt"
    windows = Normalisation(((-600.0, 1500.0), (40.0, 400.0), (400.0, 1800.0)))
    return path, save_unet_checkpoint(path, 48, windows)


def test_checkpoint_export_carries_its_training_settings_and_weights(unet_checkpoint, tmp_path):
    checkpoint, model = unet_checkpoint
    result = runner.invoke(app, ["export", str(checkpoint), "--onnx", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert "UNTRAINED" not in result.output
    metadata = read_metadata(tmp_path / "m.onnx")
    assert metadata.trained and metadata.source == str(checkpoint) and metadata.epoch == 7
    assert metadata.val_miou == pytest.approx(0.6125) and metadata.image_size == 48
    assert metadata.normalisation.windows == ((-600.0, 1500.0), (40.0, 400.0), (400.0, 1800.0))
    segmenter = OnnxSegmenter(tmp_path / "m.onnx", device="cpu")
    inputs = np.random.default_rng(2).random((1, 3, 48, 48), dtype=np.float32)
    with torch.inference_mode():
        expected = model.eval()(torch.from_numpy(inputs)).numpy()
    assert np.abs(segmenter.logits(inputs) - expected).max() < 1e-4  # the checkpoint's weights, not new ones


@pytest.fixture
def tiny_model(tmp_path_factory, monkeypatch):
    """The tiny test plugin's model name (a model name carries no width option); installed outside
    tmp_path, which the tests list."""
    with tiny_model_installed(tmp_path_factory.mktemp("plugin"), monkeypatch) as name:
        yield name


def test_cli_warns_for_a_model_name_and_refuses_an_existing_file(tmp_path, tiny_model):
    out = tmp_path / f"{tiny_model}.onnx"
    first = runner.invoke(app, ["export", tiny_model, "--onnx", "--out", str(out), "--image-size", "40"])
    assert first.exit_code == 0, first.output
    assert f"UNTRAINED {tiny_model}" in first.output
    assert "1x3x40x40" in first.output and "2x3x49x65" in first.output
    metadata = read_metadata(out)  # the metadata round-trips through the file
    assert sorted(metadata.extra) == ["graph_sha256", "model_card"]  # tests/test_model_card.py
    plain = dataclasses.replace(metadata, extra={})
    assert plain == ExportMetadata(tiny_model, 4, 3, CLASS_NAMES, Normalisation())
    assert (
        metadata.trained is False and metadata.image_size is None and metadata.covseg_version == __version__
    )
    props = {prop.key: prop.value for prop in onnx.load(out).metadata_props}
    assert props["covseg.class_names"] == '["background", "ground-glass", "consolidation", "effusion"]'
    assert props["covseg.normalisation"] == '{"windows": [[-600.0, 1500.0]]}'
    written = out.stat().st_mtime_ns
    second = runner.invoke(app, ["export", tiny_model, "--onnx", "--out", str(out)])
    assert second.exit_code == 2 and f"{out} exists; pass --overwrite" in second.output
    assert out.stat().st_mtime_ns == written
    third = runner.invoke(app, ["export", tiny_model, "--out", str(out), "--overwrite", "--image-size", "32"])
    assert third.exit_code == 0, third.output


def test_out_may_name_a_folder_that_gets_the_default_file_name(tmp_path, tiny_model):
    # --out means where the command writes, as in train, benchmark and predict: here a folder is
    # enough, and a name ending in .onnx is the file itself.
    result = runner.invoke(app, ["export", tiny_model, "--out", str(tmp_path / "models"),
                                 "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "models").iterdir()) == [f"{tiny_model}.MODEL.md",
                                                                           f"{tiny_model}.onnx"]
    assert read_metadata(tmp_path / "models" / f"{tiny_model}.onnx").model_name == tiny_model


def test_a_trailing_separator_makes_out_a_folder(tmp_path, tiny_model):
    out = tmp_path / "e7.onnx"
    result = runner.invoke(app, ["export", tiny_model, "--out", f"{out}/", "--image-size", "32"])
    assert result.exit_code == 0, result.output
    assert out.is_dir() and sorted(path.name for path in out.iterdir()) == [f"{tiny_model}.MODEL.md",
                                                                           f"{tiny_model}.onnx"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["e7.onnx"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_out_an_existing_file_without_onnx_is_refused_naming_out(tmp_path, overwrite):
    afile = tmp_path / "afile"
    afile.write_text("mine")
    result = runner.invoke(app, ["export", "unet", "--out", str(afile), *overwrite])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: --out {afile}: {afile} is a file, not a folder; give a "
                                          "folder or a file name ending in .onnx"]
    below = runner.invoke(app, ["export", "unet", "--out", str(afile / "sub")])
    assert below.stderr.splitlines() == [f"error: --out {afile / 'sub'}: cannot create {afile / 'sub'}: "
                                         f"{afile} is a file, not a folder"]
    assert afile.read_text() == "mine" and sorted(tmp_path.iterdir()) == [afile]


def test_a_folder_that_cannot_be_written_is_refused_before_the_export(read_only_folder):
    out = read_only_folder / "unet.onnx"
    result = runner.invoke(app, ["export", "unet", "--out", str(out), "--image-size", "32"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith(f"error: --out {out}: cannot write {read_only_folder}: ")
    assert "exporting" not in result.stdout  # found before the model was traced, not after
    assert list(read_only_folder.iterdir()) == []


def test_dynamo_exporter_gives_the_same_parity(unet_checkpoint):
    source = load_export_source(unet_checkpoint[0])
    result = export_model(source, trace_size=48, exporter="dynamo")
    assert all(check.passed for check in result.checks)
    segmenter = OnnxSegmenter(result.model_bytes, device="cpu")
    assert segmenter.logits(np.zeros((1, 3, 35, 71), np.float32)).shape == (1, 4, 35, 71)


class BakedResize(nn.Module):
    """The known pitfall: a size read as Python ints is traced as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.conv(x), size=(int(x.shape[-2]), int(x.shape[-1])), mode="bilinear")


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_a_resize_baked_in_as_a_constant_fails_the_check_and_writes_nothing(tmp_path):
    metadata = ExportMetadata("baked", 4, 3, CLASS_NAMES, Normalisation())
    source = ExportSource(BakedResize().eval(), metadata, "baked")
    with pytest.raises(CovsegError, match=r"returns shape \[2, 4, 64, 64\] .* its size is not dynamic"):
        export_model(source, trace_size=64)


def test_a_difference_over_the_tolerance_fails_and_writes_nothing(unet_checkpoint, tmp_path):
    out = tmp_path / "strict.onnx"
    with pytest.raises(CovsegError, match=r"does not match PyTorch: .* 1e-12\); nothing written"):
        export_onnx(unet_checkpoint[0], out, trace_size=40, tolerance=1e-12)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["unett"], "unknown model 'unett'. Did you mean unet?"),
        (["runs/unet/missing"], "runs/unet/missing does not exist; give a run folder, a .pt checkpoint"),
        (["unet", "--out", "model.pt"], "--out model.pt: give a folder or a file name ending in .onnx"),
        # Checked before the model is loaded: the missing run is never reached.
        (["runs/missing", "--tolerance", "0"], "--tolerance 0: must be a positive number"),
        (["runs/missing", "--tolerance", "nan"], "--tolerance nan: must be a positive number"),
        (["runs/missing", "--image-size", "16"], "--image-size 16: models take at least 32x32 pixels"),
        (["unet", "--no-onnx"], "--no-onnx leaves nothing to export"),
        (
            ["unet", "--image-size", "16", "--out", "x.onnx"],
            "--image-size 16: models take at least 32x32 pixels",
        ),
    ],
)
def test_bad_export_input_gets_one_line(tmp_path, monkeypatch, arguments, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", *arguments])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not list(tmp_path.rglob("*.onnx"))


def test_a_corrupt_checkpoint_gets_one_line(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(app, ["export", str(bad), "--out", str(tmp_path / "x.onnx")])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines() == [f"error: {bad} is not a covseg checkpoint (not a PyTorch file)"]
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_read_metadata_refuses_files_that_are_not_covseg_exports(tmp_path):
    text = tmp_path / "notes.onnx"
    text.write_text("hello, this is not a model\n")
    with pytest.raises(CovsegError, match="is not an ONNX model"):
        read_metadata(text)
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(nn.Conv2d(3, 4, 1), (torch.zeros(1, 3, 8, 8),), foreign, dynamo=False)
    with pytest.raises(CovsegError, match="has no covseg metadata"):
        read_metadata(foreign)
