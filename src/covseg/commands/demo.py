"""`covseg demo [--out DIR]`: the whole pipeline in about a minute, on the embedded phantom.

Train a small unet, evaluate it, export it to ONNX, write a phantom CT volume as NIfTI and predict
on it. Each step runs the real command (the same Typer command, in this process) with the
arguments printed before it, so the demo is also the list of commands to type next. Nothing is
downloaded; everything is written under ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from covseg.commands._common import console, option, user_errors
from covseg.core.errors import CovsegError

DEMO_MODEL = "unet"
DEMO_MODEL_OPTIONS = ("base_channels=8",)
"""A quarter of the paper's width (64): trains in seconds on a CPU at 64 px."""
DEMO_SIZE = 64
"""Phantom slice side in pixels (the phantom's 350 mm field of view: 350 / 64 = 5.46875 mm pixels)."""
DEMO_TRAIN_SLICES = 48
DEMO_VOLUME_SLICES = 12
DEMO_VOLUME_SEED = 1
"""Training uses phantom seed 0; the volume is drawn from another seed, slices the model never saw."""
DEMO_TRAINING = ("--batch-size", "4", "--lr", "0.005")
"""More, larger steps than the defaults (8, 0.001): the lesions start to show within a few epochs."""
DEMO_SLICE_MM = 5.0
"""Slice spacing of the demo volume (a common clinical reconstruction interval)."""
VOLUME_FILE = "phantom_ct.nii.gz"
LUNG_FILE = "phantom_lungs.nii.gz"
TRUTH_FILE = "phantom_truth.nii.gz"


def write_phantom_volume(folder: Path, count: int = DEMO_VOLUME_SLICES, size: int = DEMO_SIZE,
                         seed: int = DEMO_VOLUME_SEED, slice_mm: float = DEMO_SLICE_MM) -> dict[str, Path]:
    """Write ``count`` phantom slices as a CT volume, its lung mask and its true labels (NIfTI).

    The volume is int16 HU of shape (X, Y, Z) = (size, size, count) stored in LPS (covseg's display
    orientation, :mod:`covseg.data.orientation`), with the affine diag(-p, -p, ``slice_mm``) in RAS
    millimetres (p = the phantom's pixel size), qform and sform code 1 (scanner) and units mm, so
    viewers and ``covseg predict`` read true voxel volumes. Written through
    :func:`covseg.data.nifti.write_derived_volume` (atomic, gzip). Returns the three paths by role
    (``"volume"``, ``"lungs"``, ``"truth"``).
    """
    import nibabel as nib
    import numpy as np

    from covseg.data.loading import load_slices
    from covseg.data.nifti import write_derived_volume, write_label_volume

    slices = load_slices("phantom", None, {"count": str(count), "size": str(size), "seed": str(seed)})
    row_mm, column_mm = slices.spacing[0]
    # LPS axis codes: the first two axes point to the patient's left and posterior, -x and -y in RAS.
    affine = np.diag([-column_mm, -row_mm, slice_mm, 1.0])
    reference = nib.Nifti1Image(np.zeros((size, size, count), dtype=np.int16), affine)
    reference.set_qform(affine, code=1)
    reference.set_sform(affine, code=1)
    reference.header.set_xyzt_units("mm", "sec")
    paths = {"volume": folder / VOLUME_FILE, "lungs": folder / LUNG_FILE, "truth": folder / TRUTH_FILE}
    hu = np.stack([np.round(image).astype(np.int16) for image in slices.images])
    write_derived_volume(hu, reference, paths["volume"])
    lungs = np.stack([lung.astype(np.uint8) for lung in slices.lung_masks])
    write_derived_volume(lungs, reference, paths["lungs"])
    write_label_volume(np.stack(slices.masks), reference, paths["truth"])
    return paths


def _run(arguments: list[str]) -> None:
    """Run one covseg command in this process, as typed; stop the demo with its exit code."""
    from covseg.cli import app

    console.print(f"\n$ covseg {' '.join(arguments)}", style="bold", highlight=False)
    code = typer.main.get_command(app).main(arguments, prog_name="covseg", standalone_mode=False)
    if code:  # the step printed its own error line
        raise typer.Exit(code)


def _single_run(root: Path) -> Path:
    runs = sorted(path for path in (root / DEMO_MODEL).iterdir() if path.is_dir())
    if len(runs) != 1:
        raise CovsegError(f"{root / DEMO_MODEL} holds {len(runs)} run folders; expected the demo's one")
    return runs[0]


def most_lesion_overlay(case: Path) -> Path | None:
    """The overlay PNG of the slice with the most predicted lesion pixels in a predict case folder.

    ``labels.nii.gz`` of the demo volume is stored in display order (LPS), so its slice z is
    ``overlays/slice_{z:03d}.png``. None when no slice has a lesion.
    """
    import nibabel as nib
    import numpy as np

    labels = np.asarray(nib.load(case / "labels.nii.gz").dataobj)
    per_slice = (labels > 0).sum(axis=(0, 1))
    if not per_slice.any():
        return None
    picture = case / "overlays" / f"slice_{int(per_slice.argmax()):03d}.png"
    return picture if picture.is_file() else None


@user_errors
def demo(
    out: Annotated[Path, option(
        "--out", metavar="DIR", default_text="covseg-demo",
        help="Folder for everything the demo writes (must not exist or be empty).",
    )] = Path("covseg-demo"),
    epochs: Annotated[int, option(
        "--epochs", metavar="INTEGER", min=1, max=1000, default_text="8",
        help="Training epochs (1 for a smoke test; 8 gives visible lesions).",
    )] = 8,
) -> None:
    """Train, evaluate, export and predict on the embedded phantom in about a minute (CPU)."""
    from covseg.files import check_creatable, read_json_object

    if out.exists() and not out.is_dir():
        raise CovsegError(f"--out {out} is a file; give a new folder")
    if out.exists() and any(out.iterdir()):
        raise CovsegError(f"--out {out} exists and is not an empty folder; give a new one")
    check_creatable(out, f"--out {out}")  # as every writer: refused before the first step, nothing made
    runs, onnx_file, predictions = out / "runs", out / f"{DEMO_MODEL}.onnx", out / "predictions"
    model_options = [part for option in DEMO_MODEL_OPTIONS for part in ("--model-option", option)]
    _run(["train", DEMO_MODEL, *model_options, "--dataset", "phantom",
          "--dataset-option", f"count={DEMO_TRAIN_SLICES}", "--dataset-option", f"size={DEMO_SIZE}",
          "--epochs", str(epochs), *DEMO_TRAINING, "--workers", "0", "--device", "cpu",
          "--out", str(runs)])
    run = _single_run(runs)
    _run(["eval", str(run), "--device", "cpu"])
    _run(["export", str(run), "--out", str(onnx_file)])
    out.mkdir(parents=True, exist_ok=True)
    paths = write_phantom_volume(out)
    console.print(f"\nwrote a phantom CT volume {paths['volume']} ({DEMO_VOLUME_SLICES} slices, "
                  f"{DEMO_SLICE_MM:g} mm apart), its lung mask {paths['lungs']} and true labels "
                  f"{paths['truth']}", highlight=False)
    _run(["predict", str(onnx_file), str(paths["volume"]), "--lung-mask", str(paths["lungs"]),
          "--device", "cpu", "--out", str(predictions)])
    case = predictions / VOLUME_FILE.removesuffix(".nii.gz")
    report = read_json_object(case / "report.json")
    picture = most_lesion_overlay(case)
    console.print("\ndemo done", style="bold", highlight=False)
    # soft_wrap: paths stay on one line, to copy and paste
    console.print(f"overlay picture (with legend): {picture or 'none: the model found no lesion'}",
                  highlight=False, soft_wrap=True)
    console.print(f"lesion report: {case / 'report.json'}", highlight=False, soft_wrap=True)
    truth = true_volumes_ml(paths["truth"])
    for measure in report["classes"]:
        volume, true = measure["volume_ml"], truth.get(measure["name"])
        shown = "—" if volume is None else f"{volume:.2f}"
        truth_text = "" if true is None else f" (phantom truth {true:.2f} ml)"
        console.print(f"  {measure['name']}: {shown} ml{truth_text}", highlight=False)


def true_volumes_ml(truth: Path) -> dict[str, float]:
    """Volume in ml of each lesion class (covseg's class names) of a true label volume, and of all
    lesions together (``all-lesions``), as the lesion report names them.

    Voxel volume from the header's zooms: mm^3 / 1000 = ml.
    """
    import nibabel as nib
    import numpy as np

    from covseg import CLASS_NAMES
    from covseg.inference.report import ALL_LESIONS

    image = nib.load(truth)
    voxel_ml = float(np.prod(image.header.get_zooms()[:3])) / 1000.0
    labels = np.asarray(image.dataobj)
    volumes = {name: float((labels == label).sum()) * voxel_ml
               for label, name in enumerate(CLASS_NAMES) if label}
    volumes[ALL_LESIONS] = float((labels > 0).sum()) * voxel_ml
    return volumes
