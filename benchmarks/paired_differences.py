"""Which models of a benchmark differ? Paired bootstrap of every pair's test mIoU difference.

`covseg benchmark` calls two models different only when their separate 95 % intervals do not
overlap: a safe rule, but a weak one, since both models were scored on the same slices and a hard
slice is hard for both. This script reads a finished benchmark folder and, for every pair of models,
resamples the same test slices for both (:func:`covseg.evaluation.bootstrap.paired_difference`,
seed-averaged when there are several seeds): the difference is called real only when its own
95 % interval excludes 0. It prints a markdown table, best-first by the headline figure, beside the
overlap rule's verdict for the same pair.

    python benchmarks/paired_differences.py runs/seven-default              # the test slices
    python benchmarks/paired_differences.py runs/seven-default --split val --resamples 2000

``--split`` takes eval's names: ``test`` (default) or ``val`` (the selection slices: optimistic).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from _cli import DefaultsHelpFormatter, run_script  # benchmarks/_cli.py (scripts run from this folder)
from _markdown import print_markdown  # benchmarks/_markdown.py (scripts run from this folder)

from covseg.benchmark.plan import SETTINGS_FILE, load_plan
from covseg.benchmark.report import ModelResult, collect_results
from covseg.core.errors import CovsegError
from covseg.evaluation import bootstrap
from covseg.evaluation.scores import TEST, VALIDATION


def stacked(result: ModelResult, split: str) -> tuple[list[str], np.ndarray] | None:
    """A model's finished seeds' confusions on ``split`` as (ids, (S, N, C, C)), slices by id."""
    found = [seed.confusions.get(split) for seed in result.finished]
    if not found or any(item is None for item in found):
        return None
    ordered = []
    for ids, confusions in found:
        order = np.argsort(ids)
        ordered.append(([ids[index] for index in order], confusions[order]))
    if any(ids != ordered[0][0] for ids, _ in ordered):
        return None
    return ordered[0][0], np.stack([confusions for _, confusions in ordered])


SPLITS = {"test": TEST, "val": VALIDATION}
"""``--split`` names (eval's) and the scored sets they read."""


def main(argv: Sequence[str] | None = None) -> None:
    """Read the benchmark folder, compare every pair of models, print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter)
    parser.add_argument("folder", type=Path, metavar="BENCHMARK_DIR",
                        help="A finished benchmark (the --out of covseg benchmark), read only.")
    parser.add_argument("--split", choices=list(SPLITS), default="test",
                        help="Scored set: the held-out test slices, or val (the selection slices).")
    parser.add_argument("--resamples", type=int, default=bootstrap.RESAMPLES,
                        help="Paired bootstrap resamples.")
    arguments = parser.parse_args(argv)
    if arguments.resamples < 1:
        parser.error(f"--resamples {arguments.resamples}: at least 1 is needed")
    if not (arguments.folder / SETTINGS_FILE).is_file():
        raise CovsegError(f"{arguments.folder} holds no benchmark ({SETTINGS_FILE} is missing); give the "
                          "--out folder of a covseg benchmark")
    split = SPLITS[arguments.split]
    results = collect_results(load_plan(arguments.folder))
    key = f"{split}/miou"
    models = [(result, result.stat(key).mean, stacked(result, split)) for result in results.models]
    models = sorted((item for item in models if item[1] is not None and item[2] is not None),
                    key=lambda item: -item[1])
    if len(models) < 2:
        hint = "; use --split val" if split == TEST else ""
        raise CovsegError(f"{arguments.folder}: {len(models)} model(s) with per-slice {arguments.split} "
                          f"scores; a comparison needs two or more{hint}")
    rows = []
    for (first, mean_a, (ids_a, stack_a)), (second, mean_b, (ids_b, stack_b)) in itertools.combinations(
            models, 2):
        if ids_a != ids_b:
            raise CovsegError(f"{first.model} and {second.model} were scored on different "
                              f"{arguments.split} slices")
        difference, interval = bootstrap.paired_difference(stack_a, stack_b, "miou",
                                                           resamples=arguments.resamples)
        paired = ("-" if interval is None else "yes" if interval[0] > 0 or interval[1] < 0 else "no")
        separate = "no" if bootstrap.overlap(first.interval(key), second.interval(key)) else "yes"
        shown = "-" if interval is None else f"[{interval[0]:+.3f}, {interval[1]:+.3f}]"
        rows.append([first.model, second.model, f"{mean_a:.3f} - {mean_b:.3f}", f"{difference:+.3f}", shown,
                     paired, separate])
    seeds = sorted({len(result.finished) for result, _, _ in models})
    print(f"{arguments.folder}: {arguments.split} mIoU, {'/'.join(map(str, seeds))} seed(s) per model, "
          f"{len(models[0][2][0])} slices, {arguments.resamples} paired resamples\n")
    print_markdown(["first", "second", f"{arguments.split} mIoU (means)", "difference (seed-averaged)",
                    "paired 95% CI", "different (paired)", "different (intervals apart)"], rows)


if __name__ == "__main__":
    run_script(main)
