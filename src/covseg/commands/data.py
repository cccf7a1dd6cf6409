"""`covseg data list|info|fetch`: the installed data sets, what a data set holds, MedSeg download.

The readers (nibabel, NumPy) are imported inside the commands that read, so ``covseg --help`` and
``covseg data list`` start without them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from covseg.commands._common import (
    argument,
    console,
    error_console,
    option,
    renamed_option,
    user_errors,
    warn,
)
from covseg.commands._progress import DownloadBars
from covseg.commands.plugins import warn_plugin_problems
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.data.options import parse_dataset_options
from covseg.files import check_creatable
from covseg.terminal import Table

if TYPE_CHECKING:
    from covseg.core.entries import CTSlices

app = typer.Typer(help="Data sets: list the installed ones, inspect one, download MedSeg.",
                  no_args_is_help=True)

DATASET_HELP = "Dataset name (see `covseg data list`); detected from the path when left out."
DEFAULT_DEST = Path("data/medseg")
OPTION_HELP = ("Dataset setting as key=value, repeatable (e.g. mask_values=0,255, intensity=8bit, "
               "hu_offset=-1024, nan=air or count=40).")


@app.command("list")
@user_errors
def list_datasets() -> None:
    """List the data sets of all installed plugins."""
    table = Table(title="covseg data sets")
    for column in ("name", "needs path", "module", "description"):
        table.add_column(column, overflow="fold")
    for provided in get_registry().provided("dataset"):
        entry = provided.entry
        needs_path = "yes" if entry.needs_path else "no"
        table.add_row(entry.name, needs_path, provided.plugin.module, entry.description)
    console.print(table)
    warn_plugin_problems()


@app.command("info")
@user_errors
def info(
    target: Annotated[str | None, argument(
        "PATH", help="A data path (folder or NIfTI file) or a dataset name (phantom): short for --data "
        "PATH or --dataset NAME.")] = None,
    data: Annotated[Path | None, option(
        "--data", metavar="PATH",
        help="Data folder or file, as in train and eval (instead of PATH).")] = None,
    dataset: Annotated[str | None, option(
        "--dataset", metavar="NAME", help=DATASET_HELP)] = None,
    dataset_option: Annotated[list[str] | None, option(
        "--dataset-option", metavar="KEY=VALUE", help=OPTION_HELP)] = None,
) -> None:
    """Show a data set: format, slice count, sizes, intensity range and pixels per class."""
    from covseg.data.loading import load_slices, resolve_dataset

    options = parse_dataset_options(dataset_option)
    if target is not None and data is not None:
        raise CovsegError(f"give the data once: {target} or --data {data}, not both")
    if target is None and data is None and dataset is None:
        raise CovsegError("give a data path (PATH or --data PATH) or a data set (--dataset NAME); "
                          "see `covseg data list`")
    names = {entry.name for entry in get_registry().datasets()}
    if target is not None:
        data = Path(target)
        if dataset is None and target in names and not data.exists():
            dataset, data = target, None
    name = resolve_dataset(dataset, data)
    slices = load_slices(name, data, options)
    detected = " (detected from the path)" if dataset is None and data is not None else ""
    console.print(_summary_table(slices, name + detected))
    if slices.masks is not None:
        console.print(_class_table(slices))


def _counted(values: list[str]) -> str:
    counts = Counter(values)
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{value} ({count})" for value, count in counts.most_common())


def _summary_table(slices: CTSlices, format_name: str) -> Table:
    table = Table(title="data set", show_header=False)
    table.add_column("property")
    table.add_column("value")
    low = min(float(image.min()) for image in slices.images)
    high = max(float(image.max()) for image in slices.images)
    unit = "8-bit" if slices.intensity == "uint8" else "Hounsfield units"
    table.add_row("format", format_name)
    table.add_row("source", slices.source)
    table.add_row("slices", f"{len(slices):,}")
    images = slices.images
    table.add_row("size (HxW)", _counted([f"{image.shape[0]}x{image.shape[1]}" for image in images]))
    table.add_row("channels", _counted(["RGB" if image.ndim == 3 else "grayscale" for image in images]))
    table.add_row("intensity", f"{unit}, {low:.0f} .. {high:.0f}")
    for index, note in enumerate(slices.notes):
        table.add_row("read as" if index == 0 else "", note)
    if slices.spacing:
        table.add_row("pixel size (mm)", _counted([f"{row:.3g} x {col:.3g}" for row, col in slices.spacing]))
    table.add_row("masks", "yes" if slices.masks is not None else "no (unlabelled)")
    table.add_row("lung masks", "yes" if slices.lung_masks is not None else "no")
    return table


def _class_table(slices: CTSlices) -> Table:
    import numpy as np

    names = slices.labels.names
    pixels = np.zeros(len(names), dtype=np.int64)
    present = np.zeros(len(names), dtype=np.int64)
    for mask in slices.masks or []:
        counts = np.bincount(mask.ravel(), minlength=len(names))
        pixels += counts
        present += counts > 0
    total = max(int(pixels.sum()), 1)
    table = Table(title="pixels per class")
    for column in ("label", "class", "pixels", "share", "slices"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for label, name in enumerate(names):
        table.add_row(str(label), name, f"{pixels[label]:,}", f"{100 * pixels[label] / total:.2f}%",
                      f"{present[label]:,}")
    return table


@app.command("fetch")
@user_errors
def fetch(
    name: Annotated[str, argument("NAME", help="The data set to download: medseg.")],
    out: Annotated[Path | None, option(
        "--out", metavar="DIR", default_text=str(DEFAULT_DEST), help="Folder to put the files in.")] = None,
    dest: Annotated[Path | None, option("--dest", metavar="DIR", hidden=True,
                                        help="Old name of --out.")] = None,
    url: Annotated[str | None, option(
        "--url", metavar="URL", help="Base URL of a mirror: files are read from URL/NAME.")] = None,
) -> None:
    """Download the public MedSeg COVID-19 files (resumable, checked against known sizes and sha256)."""
    from covseg.data.fetch import check_base_url, fetch_medseg

    if dest is not None:  # --out is what every writer calls its folder
        renamed_option("--dest", "--out", "data fetch", out is not None)
    dest = out or dest or DEFAULT_DEST
    if name != "medseg":
        raise CovsegError(f"covseg can fetch 'medseg', not '{name}'")
    # Both refused before the progress display starts (it prints a line) and before anything is made.
    if url is not None:
        check_base_url(url)
    check_creatable(dest, f"--out {dest}")
    with DownloadBars(error_console) as bars:
        results = fetch_medseg(dest, url, on_progress=bars.update)
    table = Table(title=f"MedSeg files in {dest}")
    for column in ("file", "status", "bytes"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for result in results:
        table.add_row(result.name, result.status, f"{result.size:,}" if result.size else "-")
    console.print(table)
    for result in results:
        if result.status == "skipped":
            warn(f"optional {result.name} skipped: {result.detail}")
    console.print(f"read it with: covseg data info {dest}", highlight=False)
