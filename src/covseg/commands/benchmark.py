"""`covseg benchmark`: train and compare models under one set of settings and one split.

Every training setting the pairs share, and every per-machine one, is an option generated from
the TrainConfig fields (:mod:`covseg.commands._settings`), exactly as `covseg train` has it; only
the benchmark's own options are written here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from covseg.commands._common import console, error_console, option, user_errors
from covseg.commands._settings import with_settings
from covseg.core.errors import CovsegError
from covseg.terminal import SafeConsole, styled
from covseg.training.settings import BENCHMARK

if TYPE_CHECKING:
    from covseg.benchmark.report import BenchmarkResults

EXIT_FAILED_PAIRS = 1
EXIT_INTERRUPTED = 130
LOG_WIDTH = 160
DEFAULT_OUT = Path("runs/benchmark")
OWN = "Benchmark"

MODELS_HELP = "all, or comma-separated model names (see `covseg models`)."
SEEDS_HELP = "Comma-separated seeds; every model trains once per seed."
CONFIG_HELP = ("TOML or YAML file of training settings (TrainConfig field names); explicit options "
               "override it, it overrides the recipe.")
JOBS_HELP = ("Pairs run in parallel: one worker process per GPU (CUDA_VISIBLE_DEVICES), or N processes "
             "sharing the CPU cores. 1 runs them in this process.")
OUT_HELP = "Benchmark folder: runs, jobs index, results, plots."
ONLY_PAIR_HELP = ("Run only pair INDEX (0-based, model-major over --models x --seeds) and write no report: "
                  "one Slurm array task (e.g. --only-pair $SLURM_ARRAY_TASK_ID).")
REPORT_ONLY_HELP = "Train nothing: gather the runs in --out into the results and plots."
LATENCY_HELP = "Square side of the ONNX CPU latency input (32..4096 px); 0 skips the latency."


@user_errors
@with_settings(BENCHMARK)
def benchmark(
    models: Annotated[str | None, option("--models", metavar="NAMES", default_text="all", help=MODELS_HELP,
                                         rich_help_panel=OWN)] = None,
    seeds: Annotated[str | None, option("--seeds", metavar="SEEDS", default_text="0", help=SEEDS_HELP,
                                        rich_help_panel=OWN)] = None,
    config: Annotated[Path | None, option("--config", metavar="FILE", help=CONFIG_HELP,
                                          rich_help_panel=OWN)] = None,
    jobs: Annotated[int, option("--jobs", metavar="INTEGER", default_text="1", help=JOBS_HELP,
                                rich_help_panel=OWN)] = 1,
    out: Annotated[Path, option("--out", metavar="DIR", default_text=str(DEFAULT_OUT), help=OUT_HELP,
                                rich_help_panel=OWN)] = DEFAULT_OUT,
    only_pair: Annotated[int | None, option("--only-pair", metavar="INDEX", help=ONLY_PAIR_HELP,
                                            rich_help_panel=OWN)] = None,
    report_only: Annotated[bool, option("--report-only", help=REPORT_ONLY_HELP, rich_help_panel=OWN)] = False,
    latency_size: Annotated[int, option("--latency-size", metavar="INTEGER", default_text="256",
                                        help=LATENCY_HELP, rich_help_panel=OWN)] = 256,
    *,
    settings: dict[str, Any],
) -> None:
    """Train and evaluate each model under identical data, split and settings; write the comparison.

    Writes OUT/results.md, results.csv, results.json and PNG plots. Rerunning skips the finished
    model/seed pairs; a failing model is reported in the table and the others still run. Each
    shared setting takes the explicit option, then the --config file's value, then the recipe's;
    benchmark.json records them, and a rerun in the same --out must use the same ones.
    """
    from covseg.benchmark import gather, load_plan, make_pairs, run_benchmark
    from covseg.benchmark.plan import FAILED, parse_models, parse_seeds, resolve_settings, select_pair
    from covseg.commands._progress import TrainingProgress
    from covseg.training import TrainConfig

    if report_only:
        own = {"--models": models, "--seeds": seeds, "--config": config, "--only-pair": only_pair}
        extra = [name for name, value in own.items() if value is not None]
        extra += [TrainConfig.settings()[name].option for name in settings if name != "device"]
        if extra or jobs != 1:
            raise CovsegError(f"--report-only reads the settings from {out / 'benchmark.json'} and trains "
                              f"nothing; drop {(extra or ['--jobs'])[0]}")
        device = settings.get("device", "auto")
        results = gather(load_plan(out), latency_size=latency_size, device=device)
        _show(results)
        _exit_on_failures(any(model.errors for model in results.models))
        return
    if only_pair is not None and jobs != 1:
        raise CovsegError(f"--only-pair {only_pair} runs one pair in this process; drop --jobs {jobs}")
    pairs = make_pairs(parse_models(models or "all"), parse_seeds(seeds or "0"))
    shared, options = resolve_settings(pairs[0].model, settings, config, from_cli=True)
    if only_pair is not None:
        pairs = [select_pair(pairs, only_pair)]
    try:
        outcome = run_benchmark(out, shared, pairs, jobs=jobs, options=options, report=only_pair is None,
                                latency_size=latency_size, listeners=[TrainingProgress(console)])
    except KeyboardInterrupt:
        error_console.print(f"interrupted; rerun the same command to resume (finished pairs stay in "
                            f"{out})", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if outcome.results is None:
        console.print(f"Pair {pairs[0].key} is in {out}; gather all pairs with "
                      f"`covseg benchmark --report-only --out {out}`.", highlight=False)
        _exit_on_failures(any(record.status == FAILED for record in outcome.ran))
        return
    _show(outcome.results)
    _exit_on_failures(any(model.errors for model in outcome.results.models))


def _show(results: BenchmarkResults) -> None:
    """The results table, then each failed pair's error in red."""
    # Logs and pipes get 80 columns by default, too few for the table: give them room, unless
    # COLUMNS says how wide the output may be (then the table's cells wrap to fit it).
    asked = os.environ.get("COLUMNS", "").strip().isdigit()
    wide = console if console.is_terminal or asked else SafeConsole(file=console.file, width=LOG_WIDTH)
    table = results.rich_table()
    if wide.measure(table, options=wide.options.update_width(10_000)).maximum > wide.width:
        table = results.rich_table(costs=False)  # a narrow terminal: the figures, costs in results.md
    wide.print(table)
    for result in results.models:
        for error in result.errors:
            error_console.print(styled(f"{result.model} {error}", "red"), soft_wrap=True)


def _exit_on_failures(failed: bool) -> None:
    if failed:
        error_console.print("some pairs failed; their errors are in the table (results.md) and in logs/",
                            highlight=False)
        raise typer.Exit(EXIT_FAILED_PAIRS)
