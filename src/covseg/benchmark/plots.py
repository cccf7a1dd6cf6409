"""The benchmark's pictures (PNG): mIoU per model, validation curves, the prediction montage.

Figures are built with matplotlib's object API (:class:`matplotlib.figure.Figure`, rendered by
Agg): no pyplot state, no display needed, safe in worker threads and on headless nodes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from covseg import CLASS_NAMES
from covseg.benchmark.montage import Montage
from covseg.benchmark.report import BenchmarkResults
from covseg.files import atomic_write
from covseg.training.recipes import REFERENCE_MIOU, REFERENCE_STUDY
from covseg.visualize import CLASS_COLOURS, overlay, to_gray_uint8

DPI = 120


def _save(figure: Figure, path: Path) -> Path:
    atomic_write(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI,
                                                        bbox_inches="tight"))
    return path


def _reference_band(axes) -> None:
    axes.axhspan(*REFERENCE_MIOU, color="tab:green", alpha=0.18,
                 label=f"reference study (theirs): mIoU {REFERENCE_STUDY['miou']}")


def _colours(count: int) -> list:
    palette = colormaps["tab10"]
    return [palette(index % 10) for index in range(count)]


def plot_miou(results: BenchmarkResults, path: Path) -> Path:
    """Bars: mean test mIoU per model (validation mIoU without a test set), error bars the 95%
    bootstrap interval over slices, dots every seed."""
    models = results.models
    key = results.headline
    figure = Figure(figsize=(max(6.0, 1.1 * len(models) + 2.5), 4.6))
    axes = figure.subplots()
    _reference_band(axes)
    positions = np.arange(len(models))
    for position, result, colour in zip(positions, models, _colours(len(models)), strict=True):
        stat = result.stat(key)
        if stat.mean is None:
            axes.text(position, 0.02, result.status, ha="center", va="bottom", rotation=90, color="tab:red")
            continue
        interval = result.interval(key)
        error = None if interval is None else [[max(stat.mean - interval[0], 0.0)],
                                                [max(interval[1] - stat.mean, 0.0)]]
        axes.bar(position, stat.mean, width=0.6, color=colour, alpha=0.85, yerr=error, capsize=5)
        seeds = [seed.values.get(key) for seed in result.finished]
        values = [value for value in seeds if value is not None]
        axes.scatter(np.full(len(values), position), values, color="black", s=14, zorder=3,
                     label="one seed" if position == 0 else None)
        # The mean's value above its error bar, kept inside the axes when the spread reaches 1.
        top = interval[1] if interval is not None else stat.mean
        axes.text(position, min(top + 0.015, 0.965), f"{stat.mean:.3f}",
                  ha="center", fontsize=8, bbox={"facecolor": "white", "edgecolor": "none", "pad": 1})
    axes.set_xticks(positions, [result.model for result in models], rotation=30, ha="right")
    axes.set_ylim(0.0, 1.0)
    label = "test mIoU" if key.startswith("test/") else "validation (selection) mIoU"
    axes.set_ylabel(label)
    seeds = sorted({seed.seed for result in models for seed in result.seeds})
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    axes.set_title(f"{label[0].upper()}{label[1:]} per model ({seed_text}; bar: mean over seeds, "
                   "error bar: 95% bootstrap interval over slices)")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return _save(figure, path)


def plot_curves(results: BenchmarkResults, path: Path) -> Path:
    """Validation mIoU per epoch of every model (one line per seed) in one figure."""
    figure = Figure(figsize=(8.0, 4.8))
    axes = figure.subplots()
    _reference_band(axes)
    longest = 1
    for result, colour in zip(results.models, _colours(len(results.models)), strict=True):
        for index, seed in enumerate(result.finished):
            points = [(epoch, value) for epoch, value in seed.curve if value is not None]
            if not points:
                continue
            epochs, values = zip(*points, strict=True)
            longest = max(longest, max(epochs))
            axes.plot(epochs, values, color=colour, alpha=0.9 if index == 0 else 0.5, linewidth=1.4,
                      marker="o" if len(points) <= 20 else None, markersize=4,
                      label=result.model if index == 0 else None)
    axes.set_xlim(0.5, longest + 0.5)
    if longest <= 10:
        axes.set_xticks(range(1, longest + 1))
    else:
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel("epoch")
    axes.set_ylabel("validation mIoU")
    axes.set_title("Validation curves (each seed one line)")
    axes.grid(alpha=0.3)
    axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return _save(figure, path)


def plot_montage(montage: Montage, path: Path) -> Path:
    """Rows: the chosen slices; columns: image, truth, then each model's prediction."""
    models = list(montage.predictions)
    columns = 2 + len(models)
    rows = len(montage.ids)
    figure = Figure(figsize=(2.1 * columns, 2.05 * rows + 0.6))
    grid = figure.subplots(rows, columns, squeeze=False)
    titles = ["image", "truth", *models]
    for row, slice_id in enumerate(montage.ids):
        image = montage.images[row]
        panels = [to_gray_uint8(image), overlay(image, montage.truths[row]),
                  *(overlay(image, montage.predictions[model][row]) for model in models)]
        for column, panel in enumerate(panels):
            axes = grid[row][column]
            axes.imshow(panel, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(titles[column], fontsize=9)
        grid[row][0].set_ylabel(slice_id, fontsize=8)
    legend = [Patch(color=np.asarray(CLASS_COLOURS[index]) / 255.0, label=name)
              for index, name in enumerate(CLASS_NAMES) if index > 0]
    figure.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=9, frameon=False)
    figure.subplots_adjust(bottom=0.6 / (2.05 * rows + 0.6), wspace=0.04, hspace=0.08)
    return _save(figure, path)
