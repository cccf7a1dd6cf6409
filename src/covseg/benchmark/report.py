"""The benchmark's numbers, gathered once in memory and written as results.md, .csv and .json.

Every figure in the three files comes from the same :class:`BenchmarkResults` object, so they
cannot disagree. A run's accuracy figures are those of its best epoch (highest validation mIoU,
the epoch best.pt holds), read from the run's summary.json; with several seeds a model shows the
mean and the sample standard deviation over its finished seeds.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

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
from covseg.data.split import Split
from covseg.files import write_json, write_text
from covseg.runs import read_metrics, read_summary
from covseg.training.recipes import REFERENCE_MODELS, REFERENCE_STUDY

RESULTS_MD = "results.md"
RESULTS_CSV = "results.csv"
RESULTS_JSON = "results.json"
RESULTS_FORMAT = "covseg-benchmark-results-1"
MIOU_PLOT = "miou_per_model.png"
CURVES_PLOT = "validation_curves.png"
MONTAGE_PLOT = "montage.png"

@dataclass(frozen=True)
class Column:
    """One figure of the table: where it comes from, its header and how many decimals it shows."""

    key: str
    header: str
    source: str  # "metric" (summary best_metrics), "summary" (summary.json) or "measure"
    digits: int
    integer: bool = False  # shown without decimals when there is one value


COLUMNS: tuple[Column, ...] = (
    Column("miou", "Validation mIoU", "metric", 4),
    Column("pixel_accuracy", "Validation accuracy", "metric", 4),
    Column("lesion_miou", "Lesion mIoU", "metric", 4),
    *(Column(f"iou/{name}", f"IoU {name}", "metric", 4) for name in CLASS_NAMES),
    Column("mean_lesion_dice", "Mean lesion Dice", "metric", 4),
    Column("params_m", "Params (M)", "measure", 1),
    Column("gflops", f"GFLOPs ({FLOPS_SIZE}x{FLOPS_SIZE})", "measure", 1),
    Column("train_images_per_s", "Train img/s", "summary", 1),
    Column("best_epoch", "Best epoch", "summary", 1, integer=True),
    Column("wall_time_s", "Wall time (s)", "summary", 0),
    Column("latency_ms", "ONNX CPU latency (ms)", "measure", 1),
)
TERMINAL_COLUMNS = {"miou": "mIoU", "pixel_accuracy": "accuracy", "lesion_miou": "lesion mIoU",
                    "mean_lesion_dice": "lesion Dice", "params_m": "M params", "gflops": "GFLOPs",
                    "train_images_per_s": "img/s", "wall_time_s": "wall s", "latency_ms": "CPU ms"}
"""The figures the terminal table shows, with short headers."""
RUN_COLUMNS = tuple(column for column in COLUMNS if column.source != "measure")
COLUMN = {column.key: column for column in COLUMNS}


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


def format_stat(stat: Stat, column: Column) -> str:
    """``0.7123`` or ``0.7123 ± 0.0040``; ``n/a`` when no finished run defines the value."""
    if stat.mean is None:
        return "n/a"
    digits = 0 if column.integer and stat.n == 1 else column.digits
    text = f"{stat.mean:.{digits}f}"
    return text if stat.std is None else f"{text} ± {stat.std:.{digits}f}"


@dataclass
class SeedResult:
    """One pair: its status, its run, its best-epoch figures and its validation curve."""

    seed: int
    status: str
    run_dir: str | None = None
    error: str | None = None
    values: dict[str, float | None] = field(default_factory=dict)
    device: str | None = None
    precision: str | None = None
    hardware: str | None = None
    curve: list[tuple[int, float | None]] = field(default_factory=list)


@dataclass
class ModelResult:
    """One model over its seeds, with its cost measurements once they are attached."""

    model: str
    seeds: list[SeedResult]
    measurements: ModelMeasurements | None = None

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


@dataclass
class BenchmarkResults:
    """Every number of the report, in memory."""

    settings: BenchmarkSettings
    split: dict[str, Any]
    models: list[ModelResult]
    out: Path

    def first_run(self, result: ModelResult) -> Path | None:
        """The run of a model's first finished seed: exported for latency and shown in the montage."""
        finished = result.finished
        return run_path(self, finished[0]) if finished else None

    def to_dict(self) -> dict[str, Any]:
        """results.json: settings, the reference study's figures, per model mean/std and per-seed values."""
        return {
            "format": RESULTS_FORMAT,
            "settings": dict(self.settings.values),
            "settings_sources": dict(self.settings.sources),
            "split": self.split,
            "reference_study": REFERENCE_STUDY,
            "columns": {column.key: column.header for column in COLUMNS},
            "notes": self.notes(),
            "models": [
                {
                    "model": result.model,
                    "status": result.status,
                    "errors": result.errors,
                    "seeds": [seed.seed for seed in result.seeds],
                    "finished_seeds": [seed.seed for seed in result.finished],
                    "mean": {column.key: result.stat(column.key).mean for column in COLUMNS},
                    "std": {column.key: result.stat(column.key).std for column in COLUMNS},
                    "per_seed": [
                        {
                            "seed": seed.seed,
                            "status": seed.status,
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
        notes = [
            f"Settings: {self.settings.describe()}; the same split ({self.split['train']} training / "
            f"{self.split['val']} validation slices, split.json) for every model and seed.",
            "Accuracy figures are each run's best epoch (highest validation mIoU, the epoch in best.pt); "
            "with several seeds, mean ± sample standard deviation over the finished seeds.",
            f"Params and GFLOPs: one forward pass of a 1x3x{FLOPS_SIZE}x{FLOPS_SIZE} slice counted by "
            "torch.utils.flop_counter on the meta device (a multiply-add counts as 2 FLOPs).",
            "Train img/s: median over each run's epochs (the first left out when there are more) on "
            f"{', '.join(devices) or 'no finished run'}; wall time includes validation.",
        ]
        if latency is not None:
            notes.append(
                f"ONNX CPU latency: batch 1 at {latency.latency_size}x{latency.latency_size}, onnxruntime "
                f"CPU provider with {latency.latency_threads} thread(s) on {latency.cpu or 'this CPU'}, "
                f"median of the timed runs after warm-up, exported from the first finished seed's best.pt."
            )
        elif measured and measured[0].latency_size == 0:
            notes.append("ONNX CPU latency: not measured (--latency-size 0).")
        return notes

    # ---- the three files --------------------------------------------------------------------------
    def table_rows(self) -> list[list[str]]:
        """The table as text cells: the reference study's row first, then one row per model."""
        reference = [REFERENCE_STUDY["label"], REFERENCE_STUDY["miou"], REFERENCE_STUDY["pixel_accuracy"],
                     *["—"] * (len(COLUMNS) - 2), "—", "published"]
        rows = [reference]
        for result in self.models:
            cells = [format_stat(result.stat(column.key), column) for column in COLUMNS]
            seeds = ",".join(str(seed.seed) for seed in result.finished) or "—"
            rows.append([result.model, *cells, seeds, result.status_text()])
        return rows

    @staticmethod
    def headers() -> list[str]:
        return ["Model", *(column.header for column in COLUMNS), "Seeds", "Status"]

    def markdown(self) -> str:
        lines = ["# covseg benchmark", ""]
        lines += [f"- {note}" for note in self.notes()]
        lines += ["", f"Reference study: {REFERENCE_STUDY['note']}", ""]
        headers = self.headers()
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join([":---"] + ["---:"] * (len(headers) - 3) + [":---", ":---"]) + "|")
        for row in self.table_rows():
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        failures = [f"- {result.model} {error}" for result in self.models for error in result.errors]
        latency_errors = [f"- {result.model}: ONNX latency not measured: {result.measurements.latency_error}"
                          for result in self.models
                          if result.measurements is not None and result.measurements.latency_error]
        if failures or latency_errors:
            lines += ["", "## Failures", "", *failures, *latency_errors]
        lines += ["", "## Plots", "",
                  f"![validation mIoU per model]({MIOU_PLOT})", "",
                  f"![validation curves]({CURVES_PLOT})", "",
                  f"![the same validation slices predicted by each model]({MONTAGE_PLOT})", ""]
        return "\n".join(lines)

    def csv_text(self) -> str:
        """One row per model: each figure's mean and std, the seeds, the status and the errors."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        keys = [column.key for column in COLUMNS]
        writer.writerow(["model", "status", "finished_seeds",
                         *(name for key in keys for name in (key, f"{key}_std")),
                         "reference_miou", "reference_pixel_accuracy", "errors"])
        for result in self.models:
            stats = [result.stat(key) for key in keys]
            reference = is_reference_model(result.model)
            writer.writerow([
                result.model,
                result.status,
                " ".join(str(seed.seed) for seed in result.finished),
                *(_csv_number(value) for stat in stats for value in (stat.mean, stat.std)),
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

    def rich_table(self) -> Table:
        """The terminal's view: the headline figures with short headers (all of them are in results.md)."""
        table = Table(title=f"covseg benchmark ({self.out / RESULTS_MD})")
        table.add_column("model", style="bold")
        for header in TERMINAL_COLUMNS.values():
            table.add_column(header, justify="right")
        table.add_column("status")
        reference = {"miou": REFERENCE_STUDY["miou"], "pixel_accuracy": REFERENCE_STUDY["pixel_accuracy"]}
        table.add_row("reference study (theirs)", *(reference.get(key, "—") for key in TERMINAL_COLUMNS),
                      "published", style="italic")
        for result in self.models:
            cells = [format_stat(result.stat(key), COLUMN[key]) for key in TERMINAL_COLUMNS]
            table.add_row(result.model, *cells, result.status, style=None if result.errors == [] else "red")
        return table


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
    best = summary.get("best_metrics")
    best = best if isinstance(best, dict) else {}
    values: dict[str, float | None] = {}
    for column in RUN_COLUMNS:
        value = best.get(column.key) if column.source == "metric" else summary.get(column.key)
        values[column.key] = _number(value)
    relative = record.run_dir if record is not None and record.run_dir else str(run_dir)
    return SeedResult(seed, DONE, relative, None, values, summary.get("device"), summary.get("precision"),
                      record.hardware if record is not None else None, read_curve(run_dir))


def collect_results(plan: Plan) -> BenchmarkResults:
    """Every pair's outcome, read from the benchmark folder (measurements are attached later)."""
    seeds_of: dict[str, list[int]] = {}
    for pair in plan.pairs:
        seeds_of.setdefault(pair.model, []).append(pair.seed)
    models = [ModelResult(model, [_seed_result(plan, model, seed) for seed in seeds])
              for model, seeds in seeds_of.items()]
    split = Split.load(plan.split_path) if plan.split_path.is_file() else None
    split_info = {"file": str(plan.split_path), "train": len(split.train_ids) if split else 0,
                  "val": len(split.val_ids) if split else 0}
    return BenchmarkResults(plan.settings, split_info, models, plan.out)


def run_path(results: BenchmarkResults, seed: SeedResult) -> Path | None:
    """A seed's run folder as a path (run_dir is stored relative to the benchmark folder)."""
    return absolute_run_dir(results.out, seed.run_dir) if seed.run_dir else None
