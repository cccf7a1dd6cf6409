"""What test-time augmentation (``--tta flips``) does to a trained model's score and to time.

For a run folder: ``covseg eval``'s scoring (PyTorch, :func:`covseg.evaluation.evaluate.evaluate_model`,
one confusion matrix over all pixels at the trained size) with ``tta`` none and flips on each
``--split``, and ``covseg predict``'s path (onnxruntime, :func:`covseg.inference.predict.predict_slices`,
slices at their native size, the probabilities resized back) on the same slices, scored against
the masks at the native size ("native" columns) and timed with and without the flips. Each timing
is the best of ``--repeats`` runs, none and flips alternating, so background load hits both alike.

    python benchmarks/tta_effect.py runs/unet/20250101-120000 --split val --split all
"""

from __future__ import annotations

import time
from typing import Annotated

import cv2
import numpy as np
import torch
from _cli import run_script, typer_app  # benchmarks/_cli.py (scripts run from this folder)
from _markdown import print_markdown  # benchmarks/_markdown.py (scripts run from this folder)
from rich.table import Table

from covseg.benchmark.hardware import cpu_name
from covseg.commands._common import argument, option
from covseg.commands.predict import open_model
from covseg.data.dataset import SliceDataset
from covseg.evaluation.evaluate import evaluate_model
from covseg.evaluation.metrics import compute_metrics
from covseg.evaluation.trained import load_evaluation_data, load_trained_model
from covseg.inference.predict import predict_slices, resolve_settings
from covseg.terminal import SafeConsole

console = SafeConsole(width=150)
MODES = ("none", "flips")
SHOWN = ("miou", "lesion_miou", "iou/ground-glass", "iou/consolidation", "iou/effusion", "pixel_accuracy")


def native_confusion(labels: np.ndarray, truths: np.ndarray, classes: int) -> np.ndarray:
    """(C, C) pixel counts, truth by row, of labels and truths (N, H, W) at the native size."""
    return np.bincount(
        truths.astype(np.int64).ravel() * classes + labels.ravel(), minlength=classes * classes
    ).reshape(classes, classes)


def main(
    run: Annotated[str, argument("RUN", help="A run folder (its best.pt).")],
    split: Annotated[
        list[str] | None, option("--split", metavar="NAME", default_text="val",
                                 help="val, train or all (repeatable).")
    ] = None,
    threads: Annotated[int, option("--threads", metavar="INTEGER", min=1, default_text="1",
                                   help="Threads for torch, onnxruntime and OpenCV.")] = 1,
    repeats: Annotated[int, option("--repeats", metavar="INTEGER", min=1, default_text="2",
                                   help="Timed runs per setting; the best counts.")] = 2,
    batch: Annotated[int, option("--batch", metavar="INTEGER", min=1, default_text="8",
                                 help="Slices per forward pass.")] = 8,
    markdown: Annotated[bool, option("--markdown", help="Also print the table as Markdown.")] = False,
) -> None:
    """Score and time a run with and without --tta flips, in PyTorch (eval) and onnxruntime (predict)."""
    split = split or ["val"]
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    trained = load_trained_model(run, "cpu")
    segmenter, metadata = open_model(run, "cpu")
    settings = resolve_settings(segmenter, metadata)
    device = torch.device("cpu")
    console.print(
        f"machine: {cpu_name()}, {threads} thread(s); {trained.model_name} from {run}, "
        f"trained at {trained.image_size}",
        highlight=False,
    )
    columns = [
        "split",
        "slices",
        "tta",
        *SHOWN,
        "eval s",
        "eval slices/s",
        "native miou",
        "native lesion_miou",
        "predict s",
        "predict slices/s",
    ]
    table = Table(
        title="test-time augmentation: eval (PyTorch, trained size) and predict (onnxruntime, native size)"
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("split", "tta") else "right")
    rows = []
    for name in split:
        source = load_evaluation_data(trained, split=name)
        dataset = SliceDataset(
            source.slices, source.ids, trained.normalisation, image_size=trained.image_size
        )
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False)
        position = {slice_id: index for index, slice_id in enumerate(source.slices.ids)}
        native = [source.slices.images[position[slice_id]] for slice_id in source.ids]
        truths = np.stack([source.slices.masks[position[slice_id]] for slice_id in source.ids])
        results: dict[str, dict] = {mode: {"eval": float("inf"), "predict": float("inf")} for mode in MODES}
        for _ in range(repeats):  # alternate the modes, best time of each
            for mode in MODES:
                record = results[mode]
                start = time.perf_counter()
                _, record["metrics"] = evaluate_model(
                    trained.model, loader, device, trained.num_classes, tta=mode
                )
                record["eval"] = min(record["eval"], time.perf_counter() - start)
                start = time.perf_counter()
                labels = predict_slices(segmenter, native, source.slices.intensity, settings, batch, tta=mode)
                record["predict"] = min(record["predict"], time.perf_counter() - start)
                record["native"] = compute_metrics(native_confusion(labels, truths, trained.num_classes))
        for mode in MODES:
            record = results[mode]
            row = [
                name,
                str(len(source.ids)),
                mode,
                *(f"{record['metrics'].get(key, float('nan')):.4f}" for key in SHOWN),
                f"{record['eval']:.2f}",
                f"{len(source.ids) / record['eval']:.1f}",
                f"{record['native']['miou']:.4f}",
                f"{record['native']['lesion_miou']:.4f}",
                f"{record['predict']:.2f}",
                f"{len(source.ids) / record['predict']:.1f}",
            ]
            rows.append(row)
            table.add_row(*row)
        gain = {key: results["flips"]["metrics"][key] - results["none"]["metrics"][key] for key in SHOWN}
        native_gain = {
            key: results["flips"]["native"][key] - results["none"]["native"][key]
            for key in ("miou", "lesion_miou")
        }
        row = [
            name,
            "",
            "flips - none",
            *(f"{gain[key]:+.4f}" for key in SHOWN),
            f"x{results['flips']['eval'] / results['none']['eval']:.2f}",
            "",
            f"{native_gain['miou']:+.4f}",
            f"{native_gain['lesion_miou']:+.4f}",
            f"x{results['flips']['predict'] / results['none']['predict']:.2f}",
            "",
        ]
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    if markdown:
        print_markdown(columns, rows)


if __name__ == "__main__":
    run_script(typer_app(main))
