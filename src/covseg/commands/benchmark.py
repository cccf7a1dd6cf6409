"""`covseg benchmark`: train and compare models under one set of settings and one split."""

from __future__ import annotations

from pathlib import Path

import typer

from covseg.commands._common import console, error_console, user_errors
from covseg.core.errors import CovsegError

EXIT_FAILED_PAIRS = 1
EXIT_INTERRUPTED = 130
DEFAULT_OUT = Path("runs/benchmark")


@user_errors
def benchmark(
    models: str | None = typer.Option(
        None, "--models", help="all, or comma-separated model names (see `covseg models`). \\[default: all]"),
    recipe: str | None = typer.Option(
        None, "--recipe", help="reference (the study's protocol) or default (covseg's). "
        "\\[default: default]"),
    epochs: int | None = typer.Option(None, "--epochs", help="Epochs per run. \\[default: the recipe's]"),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Comma-separated seeds; every model trains once per seed. \\[default: 0]"),
    dataset: str | None = typer.Option(
        None, "--dataset", help="Dataset plugin name (see `covseg data list`)."),
    data: Path | None = typer.Option(None, "--data", help="Data folder or file; the format is detected."),
    dataset_option: list[str] | None = typer.Option(
        None, "--dataset-option", help="Dataset setting key=value (repeatable), e.g. count=16."),
    image_size: int | None = typer.Option(
        None, "--image-size", help="Resize slices to this square side. \\[default: native size]"),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Global batch. \\[default: the recipe's]"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N (with --jobs 1)."),
    workers: int | None = typer.Option(
        None, "--workers", help="DataLoader worker processes per run. \\[default: covseg train's]"),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every", help="Write each run's last.pt every N epochs (and at the end). "
        "\\[default: covseg train's]"),
    jobs: int = typer.Option(
        1, "--jobs", help="Pairs run in parallel: one worker process per GPU (CUDA_VISIBLE_DEVICES), or N "
        "processes sharing the CPU cores. 1 runs them in this process."),
    out: Path = typer.Option(
        DEFAULT_OUT, "--out", help="Benchmark folder: runs, jobs index, results, plots."),
    only_pair: int | None = typer.Option(
        None, "--only-pair", help="Run only pair INDEX (0-based, model-major over --models x --seeds) and "
        "write no report: one Slurm array task (e.g. --only-pair $SLURM_ARRAY_TASK_ID)."),
    report_only: bool = typer.Option(
        False, "--report-only", help="Train nothing: gather the runs in --out into the results and plots."),
    latency_size: int = typer.Option(
        256, "--latency-size", help="Square side of the ONNX CPU latency input; 0 skips the latency."),
) -> None:
    """Train and evaluate each model under identical data, split and settings; write the comparison.

    Writes OUT/results.md, results.csv, results.json and PNG plots. Rerunning skips the finished
    model/seed pairs; a failing model is reported in the table and the others still run.
    """
    from covseg.benchmark import BenchmarkSettings, gather, load_plan, make_pairs, run_benchmark
    from covseg.benchmark.plan import FAILED, parse_models, parse_seeds, select_pair
    from covseg.benchmark.runner import RunOptions
    from covseg.data.options import parse_dataset_options

    if report_only:
        given = {"--models": models, "--recipe": recipe, "--epochs": epochs, "--seeds": seeds,
                 "--dataset": dataset, "--data": data, "--dataset-option": dataset_option,
                 "--image-size": image_size, "--batch-size": batch_size, "--workers": workers,
                 "--checkpoint-every": checkpoint_every, "--only-pair": only_pair}
        extra = [name for name, value in given.items() if value is not None and value != []]
        if extra or jobs != 1:
            raise CovsegError(f"--report-only reads the settings from {out / 'benchmark.json'} and trains "
                              f"nothing; drop {(extra or ['--jobs'])[0]}")
        results = gather(load_plan(out), latency_size=latency_size, device=device, console=console)
        _exit_on_failures(any(model.errors for model in results.models))
        return
    if only_pair is not None and jobs != 1:
        raise CovsegError(f"--only-pair {only_pair} runs one pair in this process; drop --jobs {jobs}")
    settings = BenchmarkSettings.resolve(
        recipe=recipe or "default", epochs=epochs, batch_size=batch_size, dataset=dataset, data=data,
        dataset_options=parse_dataset_options(dataset_option), image_size=image_size,
    )
    pairs = make_pairs(parse_models(models or "all"), parse_seeds(seeds or "0"))
    if only_pair is not None:
        pairs = [select_pair(pairs, only_pair)]
    options = RunOptions(device, workers, checkpoint_every)
    try:
        outcome = run_benchmark(out, settings, pairs, jobs=jobs, options=options,
                                report=only_pair is None, latency_size=latency_size, console=console)
    except KeyboardInterrupt:
        error_console.print(f"interrupted; rerun the same command to resume (finished pairs stay in "
                            f"{out})", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if outcome.results is None:
        console.print(f"Pair {pairs[0].key} is in {out}; gather all pairs with "
                      f"`covseg benchmark --report-only --out {out}`.", highlight=False)
        _exit_on_failures(any(record.status == FAILED for record in outcome.ran))
        return
    _exit_on_failures(any(model.errors for model in outcome.results.models))


def _exit_on_failures(failed: bool) -> None:
    if failed:
        error_console.print("some pairs failed; their errors are in the table (results.md) and in logs/",
                            highlight=False)
        raise typer.Exit(EXIT_FAILED_PAIRS)
