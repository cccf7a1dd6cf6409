"""``run_benchmark`` and ``gather``: the Python API behind ``covseg benchmark``.

Example::

    from covseg.benchmark import BenchmarkSettings, make_pairs, run_benchmark

    settings = BenchmarkSettings.resolve({"epochs": 1, "image_size": 64})
    outcome = run_benchmark("runs/benchmark", settings, make_pairs(["unet", "fcn-resnet50"], [0]))
    outcome.results.write()   # already done by run_benchmark; results.md, .csv, .json and plots

Nothing here prints: messages go to the ``covseg.benchmark`` loggers (``logging``), each pair's
progress to the ``listeners`` given (lifecycle hooks), and the results table is the caller's to
show (``outcome.results.rich_table()``; the benchmark command prints it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from covseg.benchmark.measure import DEFAULT_LATENCY_SIZE, measure_model
from covseg.benchmark.montage import build_montage
from covseg.benchmark.plan import (
    BenchmarkSettings,
    JobRecord,
    Pair,
    Plan,
    RunOptions,
    ensure_split,
    finished_run,
    load_benchmark_slices,
    prepare_plan,
)
from covseg.benchmark.plots import plot_curves, plot_miou, plot_montage
from covseg.benchmark.report import CURVES_PLOT, MIOU_PLOT, MONTAGE_PLOT, BenchmarkResults, collect_results
from covseg.benchmark.runner import one_line, run_pairs, worker_slots
from covseg.core.entries import CTSlices
from covseg.core.errors import CovsegError
from covseg.data.split import Folds, Split, read_split_file
from covseg.devices import resolve_device
from covseg.files import check_creatable
from covseg.runs import fold_dir, is_cross_validation
from covseg.training.config import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE
from covseg.training.run_plugins import resolve_plugins

logger = logging.getLogger(__name__)
MIN_LATENCY_SIZE, MAX_LATENCY_SIZE = MIN_IMAGE_SIZE, MAX_IMAGE_SIZE


@dataclass
class BenchmarkOutcome:
    """What one call did: the plan, the pairs it ran and skipped, and the report (None when not written)."""

    plan: Plan
    ran: list[JobRecord]
    skipped: list[Pair]
    results: BenchmarkResults | None


def run_benchmark(
    out: str | Path,
    settings: BenchmarkSettings,
    pairs: Sequence[Pair],
    *,
    jobs: int = 1,
    options: RunOptions | None = None,
    report: bool = True,
    latency_size: int = DEFAULT_LATENCY_SIZE,
    listeners: Sequence[object] = (),
) -> BenchmarkOutcome:
    """Train every unfinished pair of ``pairs`` under ``settings`` in ``out``, then (``report``) gather.

    The split is made once (``out/split.json``) and given to every pair. Finished pairs are
    skipped; a pair that stopped part-way is resumed from its last.pt; a failing pair is recorded and
    the others still run. ``listeners`` follow each pair trained in this process (see
    :func:`covseg.training.train`). An unknown loss or logger, or a logger that cannot start, is
    refused before anything is written.
    """
    options = options or RunOptions()
    if not (latency_size == 0 or MIN_LATENCY_SIZE <= latency_size <= MAX_LATENCY_SIZE):
        raise CovsegError(f"--latency-size {latency_size}: must be 0 (no latency) or between "
                          f"{MIN_LATENCY_SIZE} and {MAX_LATENCY_SIZE}")
    # Bad --jobs or --device fail here, before any data is read.
    worker_slots(jobs, options.device)
    config = settings.train_config(pairs[0], Path(out), options)
    resolve_plugins(config)  # e.g. --loss or --log names no installed plugin
    check_creatable(out, f"--out {out}")  # a read-only --out is refused before the data is read
    slices = load_benchmark_slices(settings)  # bad data fails before the folder records any settings
    config.for_intensity(slices.intensity, slices.source)  # e.g. --window on 8-bit slices
    plan = prepare_plan(Path(out), settings, pairs)
    split = ensure_split(plan, slices)
    skipped = [pair for pair in pairs if finished_run(plan.out, pair) is not None]
    pending = [pair for pair in pairs if pair not in skipped]
    logger.info("Benchmark %s: %d pair(s), %s; split %s of %s.", plan.out, len(pairs), settings.describe(),
                describe_split(split), slices.source)
    if skipped:
        logger.info("Already finished, skipped: %s", ", ".join(pair.key for pair in skipped))
    ran = run_pairs(plan, pending, jobs=jobs, options=options, listeners=listeners)
    results = None
    if report:
        results = gather(plan, latency_size=latency_size, device=options.device, slices=slices)
    return BenchmarkOutcome(plan, ran, skipped, results)


def describe_split(split: Split | Folds) -> str:
    """``48 training / 12 validation / 20 test slices`` or ``5 folds of 12 and 13 slices, 16 test slices``."""
    test = f" / {len(split.test_ids)} test" if split.test_ids else ""
    if isinstance(split, Folds):
        return split.describe() + (f", {len(split.test_ids)} test slices" if split.test_ids else "")
    return f"{len(split.train_ids)} training / {len(split.val_ids)} validation{test} slices"


def single_model_run(run_dir: Path | None) -> Path | None:
    """The run whose best.pt stands for the architecture (latency): fold 0 of a cross-validation."""
    if run_dir is not None and is_cross_validation(run_dir):
        return fold_dir(run_dir, 0)
    return run_dir


def montage_candidates(split: Split | Folds) -> tuple[list[str], bool]:
    """The slices the montage picks from: the test slices when there are any (no model saw them),
    else the validation slices (of fold 0 with folds: True, so fold 0's members predict them)."""
    if split.test_ids:
        return list(split.test_ids), False
    if isinstance(split, Folds):
        return list(split.folds[0]), True
    return list(split.val_ids), False


def gather(
    plan: Plan,
    *,
    latency_size: int = DEFAULT_LATENCY_SIZE,
    device: str = "auto",
    slices: CTSlices | None = None,
) -> BenchmarkResults:
    """Read every pair's outcome, measure each model once, write results.md/.csv/.json and the plots.

    Returns the results; showing them (``results.rich_table()``, ``result.errors``) is the caller's.
    """
    results = collect_results(plan)
    for result in results.models:
        run_dir = single_model_run(results.first_run(result))
        logger.info("measuring %s: parameters, GFLOPs%s", result.model,
                    ", ONNX CPU latency" if run_dir and latency_size else "")
        try:
            result.measurements = measure_model(plan.out, result.model, run_dir, latency_size)
        except Exception as error:  # a model that cannot even be built was reported as failed already
            logger.warning("%s: not measured: %s", result.model, one_line(error))
    paths = results.write()
    paths.append(plot_miou(results, plan.out / MIOU_PLOT))
    paths.append(plot_curves(results, plan.out / CURVES_PLOT))
    if plan.split_path.is_file():
        split = read_split_file(plan.split_path)
        candidates, fold_zero = montage_candidates(split)
        runs = {result.model: results.first_run(result) for result in results.models if result.finished}
        if fold_zero:  # no test set: each model's fold-0 member, on the slices it did not train on
            runs = {model: fold_dir(run_dir, 0) for model, run_dir in runs.items()}
        logger.info("predicting the montage slices with every model")
        montage = build_montage(runs, slices or load_benchmark_slices(plan.settings), candidates,
                                plan.settings.image_size, resolve_device(device))
        paths.append(plot_montage(montage, plan.out / MONTAGE_PLOT))
        for model, reason in montage.skipped.items():
            logger.warning("%s: not in the montage: %s", model, reason)
    logger.info("Wrote %s", ", ".join(str(path) for path in paths))
    return results
