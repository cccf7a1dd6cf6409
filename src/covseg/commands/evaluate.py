"""`covseg eval`: score a trained run or checkpoint, print the metric tables, save overlay pictures.

torch and the evaluation code are imported inside the command, so ``covseg --help`` and
``covseg eval --help`` start without them.
"""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from covseg.commands._common import argument, console, option, user_errors, warn
from covseg.commands._settings import setting_option
from covseg.core.errors import CovsegError
from covseg.files import check_creatable, child_path, safe_file_name, write_json
from covseg.runs import SUBSETS
from covseg.terminal import Table, join, styled

if TYPE_CHECKING:
    import numpy as np
    import torch
    from rich.text import Text

    from covseg.evaluation.trained import EvaluationData, TrainedModel


PRECISION = setting_option("precision")
CHANNELS_LAST = setting_option("channels_last")


SplitChoice = Enum("SplitChoice", {name: name for name in SUBSETS}, type=str)
"""eval's --split NAME (:data:`covseg.runs.SUBSETS`)."""


class TtaChoice(str, Enum):
    none = "none"
    flips = "flips"


@user_errors
def evaluate(
    target: Annotated[Path, argument(
        "TARGET", help="A run folder (its best.pt is used), a .pt checkpoint file, or a cross-validation "
        "folder / ensemble.json (its fold models, softmax averaged).")],
    dataset: Annotated[str | None, option(
        "--dataset", metavar="NAME", help="Evaluate on this data set (see `covseg data list`); for a run, "
        "its --split slices are found by id when they are all there, else every slice is scored.")] = None,
    data: Annotated[Path | None, option(
        "--data", metavar="PATH", help="Data folder or file to evaluate on (the format is detected), e.g. "
        "the run's data moved elsewhere; the data set is detected unless --dataset is given.")] = None,
    dataset_option: Annotated[list[str] | None, option(
        "--dataset-option", metavar="KEY=VALUE", help="Data set setting key=value (repeatable); with the "
        "run's own data it overrides the run's setting.")] = None,
    split: Annotated[SplitChoice | None, option(
        "--split", metavar="NAME", help="Which slices of the run's own data: val (default; where the epoch "
        "was chosen), test (the held-out test set; an ensemble's default), train or all.")] = None,
    batch_size: Annotated[int, option(
        "--batch-size", metavar="INTEGER", min=1, default_text="8", help="Slices per forward pass.")] = 8,
    device: Annotated[str, option(
        "--device", metavar="DEVICE", default_text="auto", help="auto, cpu, cuda or cuda:N.")] = "auto",
    save_predictions: Annotated[Path | None, option(
        "--save-predictions", metavar="DIR", help="Write one PNG per slice (image | truth | prediction) "
        "into this folder.")] = None,
    overwrite: Annotated[bool, option(
        "--overwrite", help="Replace an existing --json file, and allow --save-predictions into a "
        "non-empty folder (same-named files are replaced).")] = False,
    json_path: Annotated[Path | None, option(
        "--json", metavar="FILE", help="Also write the metrics and the confusion matrix to this JSON "
        "file.")] = None,
    tta: Annotated[TtaChoice, option(
        "--tta", metavar="NAME", default_text=TtaChoice.none.value, help="Test-time augmentation: none, "
        "or flips (softmax averaged over the slice and its 3 mirror images, as covseg predict --tta "
        "flips).")] = TtaChoice.none,
    merge: Annotated[list[str] | None, option(
        "--merge", metavar="SOURCE=TARGET", help="Score against masks with fewer classes: merge model "
        "classes into a label of the evaluation data, SOURCE[,SOURCE...]=TARGET (repeatable), e.g. "
        "ground-glass,consolidation,effusion=infection. Each pixel's predicted class is chosen first, "
        "then relabelled.")] = None,
    precision: PRECISION = None,
    channels_last: CHANNELS_LAST = None,
) -> None:
    """Score a trained model: metric tables, with 95% bootstrap intervals over slices, on the run's
    validation or test split or on any data set."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from covseg.data.intensity import check_input_kind
    from covseg.data.options import parse_dataset_options
    from covseg.devices import resolve_device
    from covseg.evaluation import bootstrap
    from covseg.evaluation.evaluate import evaluate_slices
    from covseg.evaluation.merge import check_merge_sources, parse_merges, plan_merge
    from covseg.evaluation.scores import Score
    from covseg.evaluation.trained import evaluation_loader, load_evaluation_data, load_trained_model
    from covseg.training.loop import StepSettings

    # Every option that can be checked without the model or the data is refused before either is read.
    if save_predictions is not None:
        check_output_folder(save_predictions, overwrite)
    if json_path is not None:
        check_output_file(json_path, "--json", overwrite)
    parse_merges(merge or [])
    options = parse_dataset_options(dataset_option)
    torch_device = resolve_device(device)
    settings = StepSettings.for_device(torch_device, precision, channels_last)
    trained = load_trained_model(target, torch_device)
    check_merge_sources(trained.class_names, merge or [])  # the data's labels are checked once read
    model = settings.prepare_model(trained.model)
    source = load_evaluation_data(trained, dataset, data, options, split.value if split else None)
    check_input_kind(trained.intensity, source.slices.intensity, source.description,
                     str(trained.checkpoint_path),
                     hint=" (or --dataset-option intensity=hu|8bit where it was read as the wrong kind)")
    merged = plan_merge(trained.class_names, source.slices.labels.names, merge or [], source.description)
    class_names = merged.target_names if merged is not None else trained.class_names
    if source.note:  # after every refusal, so that a refused command prints one line
        console.print(source.note, highlight=False)
    if source.warning:
        warn(source.warning)
    loader, one_at_a_time = evaluation_loader(source.slices, source.ids, trained.normalisation,
                                              trained.image_size, batch_size, torch_device)
    if one_at_a_time:
        warn("slices differ in size and the model was trained at native size: evaluating one slice at a time")
    writer = (PredictionWriter(save_predictions, source.ids, trained.model_name, class_names,
                               tta.value) if save_predictions is not None else None)
    console.print(join(describe_evaluation(trained, source, torch_device), f", {settings.describe()}"))
    if merged is not None:
        console.print(f"classes merged after the argmax: {merged.describe()}", highlight=False)
    if tta != TtaChoice.none:
        from covseg.tta import describe

        console.print(f"test-time augmentation: {describe(tta.value)}", highlight=False)
    with Progress(TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("evaluate", total=len(loader))

        def on_batch(images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor) -> None:
            if writer is not None:
                writer.write_batch(images, masks, predictions)
            progress.advance(task)

        confusions = evaluate_slices(model, loader, torch_device, trained.num_classes,
                                     autocast_dtype=settings.autocast_dtype, on_batch=on_batch,
                                     tta=tta.value, channels_last=settings.channels_last, merge=merged)
    score = Score.of(source.ids, confusions, class_names)
    confusion = confusions.sum(axis=0)
    print_metric_tables(score.metrics, confusion, class_names, score.intervals)
    if writer is not None:
        console.print(f"wrote {writer.count} overlay PNG(s) to {save_predictions}: "
                      "image | truth | prediction")
        console.print(colour_legend(class_names))
    if json_path is not None:
        write_json(json_path, {
            "checkpoint": str(trained.checkpoint_path), "model": trained.model_name,
            "members": trained.members, "epoch": trained.checkpoint.get("epoch"),
            "data": source.description, "split": source.split,
            "slices": len(source.ids), "image_size": trained.image_size,
            "class_names": list(class_names), "model_class_names": list(trained.class_names),
            "merge": merged.as_dict() if merged is not None else None,
            "tta": tta.value, "metrics": score.metrics,
            "intervals": {name: list(interval) if interval else None
                          for name, interval in score.intervals.items()},
            "bootstrap": bootstrap.settings(), "confusion": confusion.tolist(),
            "slice_ids": list(source.ids), "slice_confusions": confusions.tolist(),
        })
        console.print(f"metrics written to {json_path}")


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Refuse a file, a non-empty folder without --overwrite, or a folder that cannot be written,
    before any work is done (creating nothing)."""
    if folder.exists() and not folder.is_dir():
        raise CovsegError(f"--save-predictions {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise CovsegError(f"--save-predictions {folder} exists and is not empty; add --overwrite "
                          "or choose another folder")
    check_creatable(folder, f"--save-predictions {folder}")


def check_output_file(path: Path, option: str, overwrite: bool = False) -> None:
    """Refuse an output file that is a folder, that exists (without ``overwrite``), or whose folder
    cannot be written, before any work (creating nothing)."""
    if path.is_dir():
        raise CovsegError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise CovsegError(f"{option} {path} exists; pass --overwrite to replace it")
    check_creatable(path.parent, f"{option} {path}")


class PredictionWriter:
    """Writes ``<slice id>.png`` (image | truth | prediction overlays) in loader order, captioned with
    the slice id, the model, the panels and the colour legend (:func:`covseg.visualize.captioned`).

    Names come from :func:`png_names`, and every path is checked by :func:`covseg.files.child_path`:
    whatever a slice id holds, nothing is written outside ``folder``.
    """

    def __init__(self, folder: Path, ids: list[str], model_name: str = "", class_names: tuple[str, ...] = (),
                 tta: str = "none"):
        self.folder = Path(folder)
        self.ids = ids
        self.names = png_names(ids)
        self.model_line = "image | truth | prediction" + (f" of {model_name}" if model_name else "") + (
            f" (TTA {tta})" if tta != "none" else "")
        self.class_names = class_names or None
        self.count = 0

    def write_batch(self, images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor) -> None:
        from covseg.visualize import captioned, save_png, side_by_side

        images_hwc = images.float().permute(0, 2, 3, 1).cpu().numpy()
        masks_np, predictions_np = masks.cpu().numpy(), predictions.cpu().numpy()
        for image, truth, prediction in zip(images_hwc, masks_np, predictions_np, strict=True):
            path = child_path(self.folder, self.names[self.count])
            lines = [f"slice {self.ids[self.count]}", self.model_line]
            save_png(captioned(side_by_side(image, truth, prediction), lines, self.class_names), path)
            self.count += 1


def png_names(ids: list[str]) -> list[str]:
    """Safe, distinct PNG names from slice ids, one per id in order (``a/b:3`` -> ``a_b_3.png``).

    Each id goes through :func:`covseg.files.safe_file_name` (``slice`` when nothing is left); ids
    whose names coincide, ignoring case (a case-insensitive file system would merge them), get
    ``-2``, ``-3``, ... so that no slice's picture overwrites another's.
    """
    names: list[str] = []
    taken: set[str] = set()
    for slice_id in ids:
        stem = safe_file_name(slice_id, fallback="slice")
        name, number = f"{stem}.png", 2
        while name.casefold() in taken:
            name, number = f"{stem}-{number}.png", number + 1
        taken.add(name.casefold())
        names.append(name)
    return names


def describe_evaluation(trained: TrainedModel, source: EvaluationData, device: torch.device) -> Text:
    from covseg.data.intensity import describe_input

    size = f"{trained.image_size}x{trained.image_size}" if trained.image_size else "native size"
    epoch = trained.checkpoint.get("epoch")
    at_epoch = f" (epoch {epoch})" if epoch is not None else ""
    if trained.is_ensemble:
        at_epoch = f" (ensemble of {trained.members}, mean softmax)"
    return join(styled(trained.model_name, "bold"), f" from {trained.checkpoint_path}{at_epoch} "
            f"on {source.description}, {source.split}: {len(source.ids)} slice(s) at {size}, "
            f"{describe_input(trained.normalisation, trained.intensity)}; device {device}")


HEADLINE_ORDER = ("miou", "pixel_accuracy", "lesion_miou", "mean_lesion_dice", "iou", "dice")
"""The reference study's metrics first in the tables; other plugins' metrics follow by name."""


def _display_order(name: str) -> tuple[int, str]:
    return (HEADLINE_ORDER.index(name) if name in HEADLINE_ORDER else len(HEADLINE_ORDER), name)


def format_value(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.4f}"


def format_interval(interval: tuple[float, float] | None) -> str:
    return "—" if interval is None else f"{interval[0]:.3f}-{interval[1]:.3f}"


def print_metric_tables(
    metrics: dict[str, float],
    confusion: np.ndarray,
    class_names: tuple[str, ...],
    intervals: dict[str, tuple[float, float] | None] | None = None,
) -> None:
    """The overall metrics, then one row per class with every per-class metric as a column; each
    metric with its bootstrap interval when ``intervals`` are given."""
    from covseg.core.registry import get_registry
    from covseg.evaluation import bootstrap

    registry = get_registry()
    descriptions = {entry.name: entry.description for entry in registry.metrics()}
    confidence = f"{round(100 * bootstrap.CONFIDENCE)}% CI"
    overall = Table(title="metrics (one confusion matrix over all evaluated pixels)")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    if intervals is not None:
        overall.add_column(confidence, justify="right")
    overall.add_column("what it is")
    if intervals is not None:
        overall.caption = (f"{confidence}: percentile bootstrap over slices ({bootstrap.RESAMPLES} "
                           f"resamples, seed {bootstrap.SEED}; Efron & Tibshirani 1993). Overlapping "
                           "intervals: no difference shown.")
    per_class: dict[str, dict[str, str]] = {}
    for key in sorted(metrics, key=lambda key: _display_order(key.partition("/")[0])):
        name, separator, item = key.partition("/")
        cells = [format_value(metrics[key])]
        if intervals is not None:
            cells.append(format_interval(intervals.get(key)))
        if separator:
            values = per_class.setdefault(item, {})
            values[name] = cells[0]
            if intervals is not None:
                values[f"{name} CI"] = cells[1]
        else:
            overall.add_row(name, *cells, descriptions.get(name, ""))
    console.print(overall)
    if not per_class:
        return
    table = _per_class_table(per_class, confusion, class_names, stacked=False)
    natural = console.measure(table, options=console.options.update_width(10_000)).maximum
    if natural > console.width:  # too narrow for two columns per metric: each interval under its value
        table = _per_class_table(per_class, confusion, class_names, stacked=True)
    console.print(table)


def _per_class_table(per_class: dict[str, dict[str, str]], confusion: np.ndarray,
                     class_names: tuple[str, ...], stacked: bool) -> Table:
    """One row per class; ``stacked``: each metric's interval on a second line of its cell (one
    column per metric instead of two), so the table fits 80 columns."""
    columns = list(dict.fromkeys(name for values in per_class.values() for name in values))
    if stacked:
        columns = [column for column in columns if not column.endswith(" CI")]
    table = Table(title="per class (— = class absent from truth and prediction)")
    table.add_column("class")
    for column in ("truth pixels", "predicted pixels", *columns):
        with_interval = stacked and any(f"{column} CI" in values for values in per_class.values())
        table.add_column(f"{column} (CI)" if with_interval else column, justify="right")
    truth_pixels, predicted_pixels = confusion.sum(axis=1), confusion.sum(axis=0)
    for item, values in per_class.items():
        index = class_names.index(item) if item in class_names else None
        counts = (["", ""] if index is None
                  else [f"{truth_pixels[index]:,}", f"{predicted_pixels[index]:,}"])
        cells = [values.get(column, "—") for column in columns]
        if stacked:
            cells = [cell if f"{column} CI" not in values else f"{cell}\n{values[f'{column} CI']}"
                     for column, cell in zip(columns, cells, strict=True)]
        table.add_row(item, *counts, *cells)
    return table


def colour_legend(class_names: tuple[str, ...]) -> Text:
    """``colours: ■ ground-glass ■ consolidation ■ effusion`` in the overlay colours."""
    from rich.text import Text

    from covseg.visualize import CLASS_COLOURS

    legend = Text("colours: background unchanged (grey)")
    for index, name in enumerate(class_names[1:len(CLASS_COLOURS)], start=1):
        red, green, blue = (int(channel) for channel in CLASS_COLOURS[index])
        legend.append("  ")
        legend.append("■", style=f"rgb({red},{green},{blue})")
        legend.append(f" {name} ({index})")
    return legend
