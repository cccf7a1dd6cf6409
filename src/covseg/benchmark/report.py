"""The benchmark's numbers, gathered once in memory and written as results.md, .csv and .json.

Every figure in the three files comes from the same :class:`BenchmarkResults` object, so they
cannot disagree, and each is read from the runs' own files, so they equal each run's summary.
Two kinds of accuracy figure are kept apart everywhere:

- **validation (selection)**: the slices the best epoch was chosen on (``summary.json``
  ``validation``, the epoch best.pt holds). Choosing the best of many epochs on 16-20 slices
  inflates them; they are what the reference study reported. With ``--folds K`` they are the
  cross-validated (out-of-fold) metrics.
- **test**: the held-out test set (``--test-fraction``/``--test-data``), never trained on nor used
  to choose anything, scored once with best.pt (with ``--folds``: with the fold ensemble).

With several seeds a model shows the mean and the sample standard deviation over its finished
seeds, and beside it the 95% percentile bootstrap interval over slices of that seed-averaged
figure (:mod:`covseg.evaluation.bootstrap`; with one seed exactly the run's own interval).
Models whose intervals overlap are not called different.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covseg import CLASS_NAMES
from covseg.benchmark.measure import FLOPS_SIZE, ModelMeasurements
from covseg.benchmark.plan import (
    DONE,
    FAILED,
    PENDING,
    RUNNING,
    BenchmarkSettings,
    Pair,
    Plan,
    absolute_run_dir,
    finished_run,
    read_record,
)
from covseg.core.errors import CovsegError
from covseg.data.split import Folds, read_split_file
from covseg.evaluation import bootstrap
from covseg.evaluation.scores import TEST, VALIDATION, read_slice_confusions
from covseg.files import write_json, write_text
from covseg.runs import SLICE_CONFUSIONS, fold_dir, is_cross_validation, read_metrics, read_summary
from covseg.terminal import Table
from covseg.training.recipes import REFERENCE_MODELS, REFERENCE_STUDY

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_FORMAT = "covseg-benchmark-results-2"
MIOU_PLOT = "miou_per_model.png"
CURVES_PLOT = "validation_curves.png"
MONTAGE_PLOT = "montage.png"
SPLITS = {VALIDATION: "Validation", TEST: "Test"}
"""The scored sets, as the headers name them."""


@dataclass(frozen=True)
class Column:
    """One figure of the table: where it comes from, its header and how many decimals it shows.

    ``source``: ``validation`` or ``test`` (that block of the run's summary.json; ``key`` is
    ``<set>/<metric>``), ``summary`` (a summary.json value) or ``measure`` (cost measurements).
    """

    key: str
    header: str
    source: str
    digits: int
    integer: bool = False  # shown without decimals when there is one whole value

    @property
    def metric(self) -> str:
        """The metric's name in the run's summary (``miou``, ``iou/effusion``)."""
        return self.key.split("/", 1)[1] if self.source in SPLITS else self.key


def _metric_columns(split: str) -> tuple[Column, ...]:
    label = SPLITS[split]
    return (
        Column(f"{split}/miou", f"{label} mIoU", split, 4),
        Column(f"{split}/pixel_accuracy", f"{label} accuracy", split, 4),
        Column(f"{split}/lesion_miou", f"{label} lesion mIoU", split, 4),
        *(Column(f"{split}/iou/{name}", f"{label} IoU {name}", split, 4) for name in CLASS_NAMES),
        *(Column(f"{split}/dice/{name}", f"{label} Dice {name}", split, 4) for name in CLASS_NAMES[1:]),
        Column(f"{split}/mean_lesion_dice", f"{label} mean lesion Dice", split, 4),
    )


COST_COLUMNS: tuple[Column, ...] = (
    Column("params_m", "Params (M)", "measure", 1),
    Column("gflops", f"GFLOPs ({FLOPS_SIZE}x{FLOPS_SIZE})", "measure", 1),
    Column("train_images_per_s", "Train img/s", "summary", 1),
    Column("best_epoch", "Best epoch", "summary", 1, integer=True),
    Column("wall_time_s", "Wall time (s)", "summary", 0),
    Column("latency_ms", "ONNX CPU latency (ms)", "measure", 1),
)
METRIC_COLUMNS = {split: _metric_columns(split) for split in SPLITS}
COLUMNS: tuple[Column, ...] = (*METRIC_COLUMNS[VALIDATION], *METRIC_COLUMNS[TEST], *COST_COLUMNS)
COLUMN = {column.key: column for column in COLUMNS}
MAIN_KEYS = (f"{VALIDATION}/miou", f"{VALIDATION}/pixel_accuracy", f"{TEST}/miou", f"{TEST}/pixel_accuracy",
             *(column.key for column in COST_COLUMNS))
"""The first table of results.md: the reference study's two figures, for both sets, and the costs."""
RUN_COLUMNS = tuple(column for column in COLUMNS if column.source != "measure")
TERMINAL_COSTS = {"params_m": "M params", "gflops": "GFLOPs", "train_images_per_s": "img/s",
                  "latency_ms": "CPU ms"}


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation of the finished seeds' values (NaN values left out)."""

    mean: float | None
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat:
        finite = [float(value) for value in values if value is not None and math.isfinite(value)]
        if not finite:
            return cls(None, None, 0)
        mean = math.fsum(finite) / len(finite)
        if len(finite) == 1:
            return cls(mean, None, 1)
        variance = math.fsum((value - mean) ** 2 for value in finite) / (len(finite) - 1)
        return cls(mean, math.sqrt(variance), len(finite))


def format_stat(stat: Stat, column: Column, interval: bootstrap.Interval | None = None) -> str:
    """``0.7123``, ``0.7123 ± 0.0040``, with `` [0.6900, 0.7300]`` (the interval) when given;
    ``n/a`` when no finished run defines the value."""
    if stat.mean is None:
        return "n/a"
    whole = column.integer and stat.n == 1 and float(stat.mean).is_integer()
    digits = 0 if whole else column.digits
    text = f"{stat.mean:.{digits}f}"
    if stat.std is not None:
        text += f" ± {stat.std:.{digits}f}"
    if interval is not None:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text


@dataclass
class SeedResult:
    """One pair: its status, its run, its figures, the per-slice confusions behind them, its curve."""

    seed: int
    status: str
    run_dir: str | None = None
    error: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    device: str | None = None
    precision: str | None = None
    hardware: str | None = None
    curve: list[tuple[int, float | None]] = field(default_factory=list)
    confusions: dict[str, tuple[list[str], np.ndarray]] = field(default_factory=dict)
    """Per scored set (validation, test): the slice ids and their (N, C, C) confusions."""
    kind: str = "run"
    """``run``, or ``cross-validation`` (validation figures out of fold, test of the ensemble)."""


@dataclass
class ModelResult:
    """One model over its seeds, with its cost measurements once they are attached."""

    model: str
    seeds: list[SeedResult]
    measurements: ModelMeasurements | None = None
    intervals: dict[str, dict[str, bootstrap.Interval | None]] = field(default_factory=dict)
    """Per scored set: each metric's interval over slices of the seed-averaged value."""

    @property
    def finished(self) -> list[SeedResult]:
        return [seed for seed in self.seeds if seed.status == DONE]

    @property
    def status(self) -> str:
        """done, failed, partial (some seeds failed or are missing), running or not run."""
        statuses = {seed.status for seed in self.seeds}
        if statuses == {DONE}:
            return DONE
        if DONE in statuses:
            return "partial"
        if FAILED in statuses:
            return FAILED
        return RUNNING if RUNNING in statuses else "not run"

    @property
    def errors(self) -> list[str]:
        return [f"seed {seed.seed}: {seed.error}" for seed in self.seeds
                if seed.status == FAILED and seed.error]

    def status_text(self, limit: int = 90) -> str:
        """The status cell: ``done``, or what went wrong in short (the full errors follow the table)."""
        status = self.status
        done = len(self.finished)
        text = status if status in (DONE, "not run", RUNNING) else f"{status} ({done}/{len(self.seeds)} done)"
        errors = self.errors
        if errors:
            first = errors[0] if len(errors[0]) <= limit else errors[0][: limit - 3] + "..."
            text += f": {first}"
        return text

    def stat(self, key: str) -> Stat:
        column = COLUMN[key]
        if column.source == "measure":
            value = getattr(self.measurements, key) if self.measurements is not None else None
            return Stat.of([value])
        return Stat.of(seed.values.get(key) for seed in self.finished)

    def interval(self, key: str) -> bootstrap.Interval | None:
        column = COLUMN[key]
        if column.source not in SPLITS:
            return None
        return self.intervals.get(column.source, {}).get(column.metric)

    def cell(self, key: str) -> str:
        return format_stat(self.stat(key), COLUMN[key], self.interval(key))

    def compute_intervals(self) -> None:
        """The joint bootstrap over slices of the finished seeds (same slices for every seed)."""
        self.intervals = {}
        for split in SPLITS:
            found = [seed.confusions.get(split) for seed in self.finished]
            if not found or any(item is None or item[0] != found[0][0] for item in found):
                continue  # an older run without per-slice confusions, or seeds scored on other slices
            self.intervals[split] = bootstrap.bootstrap_intervals(np.stack([item[1] for item in found]))


@dataclass
class BenchmarkResults:
    """Every number of the report, in memory."""

    settings: BenchmarkSettings
    split: dict[str, Any]
    models: list[ModelResult]
    out: Path

    def first_run(self, result: ModelResult) -> Path | None:
        """The run of a model's first finished seed (a cross-validation folder with --folds)."""
        finished = result.finished
        return run_path(self, finished[0]) if finished else None

    @property
    def has_test(self) -> bool:
        return any(seed.values.get(f"{TEST}/miou") is not None for result in self.models
                   for seed in result.finished)

    @property
    def headline(self) -> str:
        """The figure models are compared by: test mIoU when there is a test set, else validation mIoU."""
        return f"{TEST}/miou" if self.has_test else f"{VALIDATION}/miou"

    def to_dict(self) -> dict[str, Any]:
        """results.json: settings, the reference study's figures, per model mean/std/interval and
        per-seed values."""
        return {
            "format": RESULTS_FORMAT,
            "settings": dict(self.settings.values),
            "settings_sources": dict(self.settings.sources),
            "split": self.split,
            "reference_study": REFERENCE_STUDY,
            "columns": {column.key: column.header for column in COLUMNS},
            "bootstrap": bootstrap.settings(),
            "notes": self.notes(),
            "differences": self.differences(),
            "models": [
                {
                    "model": result.model,
                    "status": result.status,
                    "errors": result.errors,
                    "seeds": [seed.seed for seed in result.seeds],
                    "finished_seeds": [seed.seed for seed in result.finished],
                    "mean": {column.key: result.stat(column.key).mean for column in COLUMNS},
                    "std": {column.key: result.stat(column.key).std for column in COLUMNS},
                    "interval": {column.key: _pair(result.interval(column.key)) for column in COLUMNS
                                 if column.source in SPLITS},
                    "per_seed": [
                        {
                            "seed": seed.seed,
                            "status": seed.status,
                            "kind": seed.kind,
                            "run_dir": seed.run_dir,
                            "error": seed.error,
                            "device": seed.device,
                            "hardware": seed.hardware,
                            "precision": seed.precision,
                            **{column.key: seed.values.get(column.key) for column in RUN_COLUMNS},
                        }
                        for seed in result.seeds
                    ],
                    "measurements": vars(result.measurements) if result.measurements else None,
                }
                for result in self.models
            ],
        }

    def notes(self) -> list[str]:
        """How each figure was obtained (printed under the table and stored in results.json)."""
        devices = sorted({f"{seed.hardware or seed.device} ({seed.precision})" for result in self.models
                          for seed in result.finished if seed.device})
        measured = [result.measurements for result in self.models if result.measurements]
        latency = next((item for item in measured if item.latency_ms is not None), None)
        folds = self.settings.values.get("folds")
        split = self.split
        test_text = (f"{split['test']} test slices held out of training and selection"
                     if split.get("test") else "no test set")
        if folds:
            shape = (f"{folds} cross-validation folds of {split.get('folds_sizes')} slices and {test_text}; "
                     "each model and seed trains one model per fold")
        else:
            shape = f"{split['train']} training / {split['val']} validation slices and {test_text}"
        confidence = round(100 * bootstrap.CONFIDENCE)
        notes = [
            f"Settings: {self.settings.describe()}; the same split ({shape}, split.json) for every model "
            "and seed.",
            ("Validation (selection): the cross-validated, out-of-fold metrics (every non-test slice "
             "scored by the fold model that did not train on it; each fold chose its epoch on its own "
             "fold, so they are optimistic)." if folds else
             "Validation (selection): each run's best epoch (highest validation mIoU, the epoch in best.pt), "
             "chosen on these very slices, so they are optimistic; the reference study reported these."),
            ("Test: the held-out slices, never trained on and never used to choose anything, scored once "
             + ("with the ensemble of the fold models (mean softmax)." if folds else "with best.pt.")
             if self.has_test else
             "Test: none (give --test-fraction or --test-data); the validation figures are optimistic."),
            f"Accuracy cells: value (mean ± sample std over the finished seeds when there are several) "
            f"and [{confidence}% percentile bootstrap interval over slices, {bootstrap.RESAMPLES} resamples, "
            f"seed {bootstrap.SEED}] (Efron & Tibshirani 1993) of that value: the ± is the spread between "
            "seeds, the interval the uncertainty from the few slices scored; models whose intervals overlap "
            "are not called different.",
            f"Params and GFLOPs: one forward pass of a 1x3x{FLOPS_SIZE}x{FLOPS_SIZE} slice counted by "
            "torch.utils.flop_counter on the meta device (a multiply-add counts as 2 FLOPs).",
            "Train img/s: median over each run's epochs (the first left out when there are more) on "
            f"{', '.join(devices) or 'no finished run'}; wall time includes validation"
            + (" and is the sum over the folds; best epoch is the folds' mean." if folds else "."),
        ]
        if latency is not None:
            notes.append(
                f"ONNX CPU latency: batch 1 at {latency.latency_size}x{latency.latency_size}, onnxruntime "
                f"CPU provider with {latency.latency_threads} thread(s) on {latency.cpu or 'this CPU'}, "
                f"median of the timed runs after warm-up, exported from the first finished seed's best.pt"
                + (" (fold 0's: one model, not the ensemble)" if folds else "")
                + ("; measured by an earlier run into this folder (this one had --latency-size 0)."
                   if latency.latency_earlier else ".")
            )
        elif measured and measured[0].latency_size == 0:
            notes.append("ONNX CPU latency: not measured (--latency-size 0).")
        return notes

    def differences(self) -> list[str]:
        """Pairs of models whose headline intervals do not overlap (the only differences claimed)."""
        key = self.headline
        ranked = [(result, result.stat(key).mean, result.interval(key)) for result in self.models]
        ranked = [item for item in ranked if item[1] is not None and item[2] is not None]
        claims = []
        for (first, mean_a, interval_a), (second, mean_b, interval_b) in itertools.combinations(ranked, 2):
            if not bootstrap.overlap(interval_a, interval_b):
                better, worse = (first, second) if mean_a > mean_b else (second, first)
                claims.append(f"{better.model} > {worse.model}")
        return claims

    # ---- the three files --------------------------------------------------------------------------
    def table_rows(self, keys: Iterable[str] = MAIN_KEYS) -> list[list[str]]:
        """A table as text cells: the reference study's row first, then one row per model."""
        keys = list(keys)
        reference_cells = {f"{VALIDATION}/miou": REFERENCE_STUDY["miou"],
                           f"{VALIDATION}/pixel_accuracy": REFERENCE_STUDY["pixel_accuracy"]}
        reference = [reference_cells.get(key, "—") for key in keys]
        rows = [[REFERENCE_STUDY["label"], *reference, "—", "published"]]
        for result in self.models:
            seeds = ",".join(str(seed.seed) for seed in result.finished) or "—"
            rows.append([result.model, *(result.cell(key) for key in keys), seeds, result.status_text()])
        return rows

    @staticmethod
    def headers(keys: Iterable[str] = MAIN_KEYS) -> list[str]:
        return ["Model", *(COLUMN[key].header for key in keys), "Seeds", "Status"]

    def markdown(self) -> str:
        lines = ["# covseg benchmark", ""]
        lines += [f"- {note}" for note in self.notes()]
        lines += ["", f"Reference study: {REFERENCE_STUDY['note']}", ""]
        lines += _markdown_table(self.headers(), self.table_rows())
        for split in SPLITS:
            if split == TEST and not self.has_test:
                continue
            keys = [column.key for column in METRIC_COLUMNS[split] if column.key not in MAIN_KEYS]
            title = "validation (selection)" if split == VALIDATION else "test (held out)"
            lines += ["", f"## Per class, {title}", ""]
            lines += _markdown_table(self.headers(keys), self.table_rows(keys)[1:])
        headline = COLUMN[self.headline].header
        claims = self.differences()
        lines += ["", "## Differences", "",
                  f"On {headline}, only these pairs differ beyond their {round(100 * bootstrap.CONFIDENCE)}% "
                  f"intervals: {', '.join(claims)}." if claims else
                  f"On {headline}, no two models differ beyond their {round(100 * bootstrap.CONFIDENCE)}% "
                  "intervals (overlapping intervals: no difference shown)."]
        failures = [f"- {result.model} {error}" for result in self.models for error in result.errors]
        latency_errors = [f"- {result.model}: ONNX latency not measured: {result.measurements.latency_error}"
                          for result in self.models
                          if result.measurements is not None and result.measurements.latency_error]
        if failures or latency_errors:
            lines += ["", "## Failures", "", *failures, *latency_errors]
        montage = "test" if self.has_test else "validation"
        lines += ["", "## Plots", "",
                  f"![{SPLITS[self.headline.split('/')[0]].lower()} mIoU per model]({MIOU_PLOT})", "",
                  f"![validation curves]({CURVES_PLOT})", "",
                  f"![the same {montage} slices predicted by each model]({MONTAGE_PLOT})", ""]
        return "\n".join(lines)

    def csv_text(self) -> str:
        """One row per model: each figure's mean, std and interval, the seeds, the status, the errors."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        names = []
        for column in COLUMNS:
            names += [column.key, f"{column.key}_std"]
            if column.source in SPLITS:
                names += [f"{column.key}_ci_low", f"{column.key}_ci_high"]
        writer.writerow(["model", "status", "finished_seeds", *names,
                         "reference_miou", "reference_pixel_accuracy", "errors"])
        for result in self.models:
            cells = []
            for column in COLUMNS:
                stat = result.stat(column.key)
                cells += [_csv_number(stat.mean), _csv_number(stat.std)]
                if column.source in SPLITS:
                    interval = result.interval(column.key)
                    cells += [_csv_number(interval[0] if interval else None),
                              _csv_number(interval[1] if interval else None)]
            reference = is_reference_model(result.model)
            writer.writerow([
                result.model,
                result.status,
                " ".join(str(seed.seed) for seed in result.finished),
                *cells,
                REFERENCE_STUDY["miou"] if reference else "",
                REFERENCE_STUDY["pixel_accuracy"] if reference else "",
                "; ".join(result.errors),
            ])
        return buffer.getvalue()

    def write(self) -> list[Path]:
        """Write results.md, results.csv and results.json atomically; returns their paths."""
        paths = [self.out / RESULTS_MD, self.out / RESULTS_CSV, self.out / RESULTS_JSON]
        for path, text in zip(paths[:2], (self.markdown(), self.csv_text()), strict=True):
            write_text(path, text)
        write_json(paths[2], self.to_dict())
        return paths

    def terminal_columns(self, costs: bool = True) -> dict[str, str]:
        """The figures the terminal table shows, with short headers (all of them are in results.md);
        ``costs``: with the model's costs (parameters, GFLOPs, throughput, latency)."""
        shown = {f"{VALIDATION}/miou": "val mIoU"}
        split = TEST if self.has_test else VALIDATION
        short = "test" if split == TEST else "val"
        if split == TEST:
            shown[f"{TEST}/miou"] = "test mIoU"
        shown[f"{split}/pixel_accuracy"] = f"{short} acc"
        shown[f"{split}/mean_lesion_dice"] = f"{short} lesion Dice"
        return {**shown, **TERMINAL_COSTS} if costs else shown

    def rich_table(self, costs: bool = True) -> Table:
        """The terminal's view: the headline figures with short headers; the headline one with its
        interval (everything is in results.md); ``costs=False`` leaves the cost columns out (a
        narrow terminal) and says so in the caption."""
        columns = self.terminal_columns(costs)
        headline = self.headline
        confidence = f"{round(100 * bootstrap.CONFIDENCE)}% CI"
        table = Table(title=f"covseg benchmark ({self.out / RESULTS_MD})")
        table.add_column("model", style="bold")
        for key, header in columns.items():
            table.add_column(header, justify="right")
            if key == headline:
                table.add_column(confidence, justify="right")
        table.add_column("status")
        table.caption = ("val: where the epoch was chosen (optimistic)"
                         + ("; test: held out, scored once" if self.has_test else "; no test set")
                         + f"; {confidence}: bootstrap over slices"
                         + ("" if costs else "; costs (parameters, GFLOPs, speed) are in results.md"))
        reference = {f"{VALIDATION}/miou": REFERENCE_STUDY["miou"],
                     f"{VALIDATION}/pixel_accuracy": REFERENCE_STUDY["pixel_accuracy"]}
        cells = []
        for key in columns:
            cells.append(reference.get(key, "—"))
            if key == headline:
                cells.append("—")
        table.add_row("reference study (theirs)", *cells, "published", style="italic")
        for result in self.models:
            cells = []
            for key in columns:
                cells.append(format_stat(result.stat(key), COLUMN[key]))
                if key == headline:
                    interval = result.interval(key)
                    cells.append("—" if interval is None else f"{interval[0]:.3f}-{interval[1]:.3f}")
            table.add_row(result.model, *cells, result.status, style=None if result.errors == [] else "red")
        return table


def _markdown_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(headers) - 3) + [":---", ":---"]) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def _pair(interval: bootstrap.Interval | None) -> list[float] | None:
    return list(interval) if interval is not None else None


def is_reference_model(name: str) -> bool:
    """Whether ``name`` (or the model it is an alias of) is one of the study's seven."""
    from covseg.core.registry import get_registry

    try:
        canonical = get_registry().model(name).name
    except CovsegError:  # a model whose plugin is gone: judge by the name alone
        canonical = name
    return canonical in REFERENCE_MODELS or name in REFERENCE_MODELS


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


# ---- gathering -----------------------------------------------------------------------------------
def read_curve(run_dir: Path) -> list[tuple[int, float | None]]:
    """(epoch, validation mIoU) of every epoch in a run's metrics.jsonl."""
    return [(int(record["epoch"]), _number(record.get("miou"))) for record in read_metrics(run_dir)]


def _number(value: object) -> float | None:
    """A metric value from a run file: a finite float, or None (null, missing or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _seed_result(plan: Plan, model: str, seed: int) -> SeedResult:
    pair = Pair(model, seed)
    run_dir = finished_run(plan.out, pair)
    record = read_record(plan.out, pair)
    if run_dir is None:
        status = record.status if record is not None else PENDING
        return SeedResult(seed, status, record.run_dir if record else None, record.error if record else None)
    summary = read_summary(run_dir)
    values: dict[str, float | None] = {}
    for column in RUN_COLUMNS:
        if column.source in SPLITS:
            values[column.key] = _number(split_metrics(summary, column.source).get(column.metric))
        else:
            values[column.key] = _number(summary.get(column.key))
    relative = record.run_dir if record is not None and record.run_dir else str(run_dir)
    cross_validation = is_cross_validation(run_dir)
    curve_dir = fold_dir(run_dir, 0) if cross_validation else run_dir
    confusions_path = run_dir / SLICE_CONFUSIONS
    confusions = read_slice_confusions(confusions_path) if confusions_path.is_file() else {}
    return SeedResult(seed, DONE, relative, None, values, summary.get("device"), summary.get("precision"),
                      record.hardware if record is not None else None, read_curve(curve_dir),
                      {name: confusions[name] for name in SPLITS if name in confusions},
                      "cross-validation" if cross_validation else "run")


def split_metrics(summary: dict[str, Any], split: str) -> dict[str, Any]:
    """The ``validation`` or ``test`` metrics of a run's summary.json; a summary written before the
    test set existed has its best epoch's metrics (``best_metrics``) as validation and no test."""
    block = summary.get(split)
    if isinstance(block, dict) and isinstance(block.get("metrics"), dict):
        return block["metrics"]
    if split == VALIDATION and isinstance(summary.get("best_metrics"), dict):
        return summary["best_metrics"]
    return {}


def collect_results(plan: Plan) -> BenchmarkResults:
    """Every pair's outcome, read from the benchmark folder (measurements are attached later)."""
    seeds_of: dict[str, list[int]] = {}
    for pair in plan.pairs:
        seeds_of.setdefault(pair.model, []).append(pair.seed)
    models = [ModelResult(model, [_seed_result(plan, model, seed) for seed in seeds])
              for model, seeds in seeds_of.items()]
    for result in models:
        result.compute_intervals()
    return BenchmarkResults(plan.settings, split_info(plan), models, plan.out)


def split_info(plan: Plan) -> dict[str, Any]:
    """How many slices train, validate and test (results.json ``split``)."""
    info: dict[str, Any] = {"file": str(plan.split_path), "train": 0, "val": 0, "test": 0}
    if not plan.split_path.is_file():
        return info
    split = read_split_file(plan.split_path)
    info["test"] = len(split.test_ids)
    if isinstance(split, Folds):
        sizes = [len(fold) for fold in split.folds]
        # Each fold model trains on the other folds; every non-test slice validates once.
        info.update(folds=len(sizes), folds_sizes="/".join(map(str, sizes)), train=None, val=sum(sizes))
        return info
    info.update(train=len(split.train_ids), val=len(split.val_ids))
    return info


def run_path(results: BenchmarkResults, seed: SeedResult) -> Path | None:
    """A seed's run folder as a path (run_dir is stored relative to the benchmark folder)."""
    return absolute_run_dir(results.out, seed.run_dir) if seed.run_dir else None
