"""What a bootstrap interval costs: ``bootstrap_intervals`` (1000 resamples) for 16 to 400 slices.

Baseline, measured in the same run: the same number of plain ``compute_metrics`` calls on one
fixed confusion matrix (what the metric plugins cost alone); the ratio shows what resampling adds.
Every training run pays this twice (validation and test), a benchmark once per model and set.

    python benchmarks/bootstrap_cost.py
"""

from __future__ import annotations

import time

import numpy as np
import torch
from _cli import run_script  # benchmarks/_cli.py (scripts run from this folder)

from covseg.evaluation.bootstrap import RESAMPLES, bootstrap_intervals
from covseg.evaluation.confusion import slice_confusion_matrices
from covseg.evaluation.metrics import compute_metrics


def confusions(count: int, size: int = 64) -> np.ndarray:
    generator = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 4, (count, size, size), generator=generator)
    guess = torch.randint(0, 4, (count, size, size), generator=generator)
    keep = torch.rand((count, size, size), generator=generator) < 0.7
    return slice_confusion_matrices(torch.where(keep, truth, guess), truth, 4).numpy()


def seconds(function, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    print(f"| slices | seeds | bootstrap, {RESAMPLES} resamples (s) | {RESAMPLES} x compute_metrics (s) "
          "| ratio |")
    print("|---:|---:|---:|---:|---:|")
    for count, seeds in ((16, 1), (80, 1), (400, 1), (16, 3)):
        stack = np.stack([confusions(count) for _ in range(seeds)])
        summed = stack[0].sum(0)
        bootstrap_s = seconds(lambda stack=stack: bootstrap_intervals(stack))
        baseline_s = seconds(lambda summed=summed, seeds=seeds: [compute_metrics(summed)
                                                                  for _ in range(RESAMPLES * seeds)])
        ratio = bootstrap_s / baseline_s
        print(f"| {count} | {seeds} | {bootstrap_s:.3f} | {baseline_s:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    run_script(main)
