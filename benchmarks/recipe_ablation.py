"""Ablation of the recipe candidates: does each part of a stronger recipe help on the real slices?

Trains one model (unet) for each variant x seed at a fixed budget and scores every run once on a
held-out test set. Variants: ``default`` (covseg's recipe), ``default`` plus one candidate
(``nnunet-aug``, ``foreground``, ``ema``, ``sgd-poly``), ``all`` (every candidate together) and
``reference`` (the study's recipe at the same budget). The test (and validation) slices are fixed by
one split file made with seed 0 for every variant and seed: a seeded split would move with the
training seed, and the variants would be scored on different slices. The seed then changes only
initialisation, shuffling and augmentation.

Prints a markdown table: test mIoU mean ± std over seeds, the mean of the runs' bootstrap 95 %
intervals (summary.json's test block), lesion mIoU, per-class IoU, validation mIoU of the chosen
epoch, wall time, and the difference to ``default`` with its paired bootstrap interval
(:func:`covseg.evaluation.bootstrap.paired_difference`: the same test slices resampled for both,
seed-averaged mIoU): a variant is called better or worse only when that interval excludes 0. Also
writes OUT/ablation.json.

    python benchmarks/recipe_ablation.py --epochs 100 --seeds 0 1 2          # the 80 real slices
    python benchmarks/recipe_ablation.py --variants default ema --epochs 2    # a subset

With ``--out``, a rerun reuses every finished run there whose settings match (so seeds can be added
later: ``--seeds 0 1 2`` after ``--seeds 0`` trains seeds 1 and 2 only) and reports all of them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _cli import DefaultsHelpFormatter, run_script  # benchmarks/_cli.py (scripts run from this folder)

from covseg.core.registry import create_model
from covseg.data.options import parse_dataset_options
from covseg.data.split import Split, make_split
from covseg.devices import parse_device
from covseg.evaluation.bootstrap import paired_difference
from covseg.evaluation.scores import read_slice_confusions
from covseg.files import write_json
from covseg.runs import SLICE_CONFUSIONS
from covseg.training import TrainConfig, train
from covseg.training.distributed import DistributedContext
from covseg.training.loaders import load_run_slices, per_process_batch

MEDSEG100_VARIABLE = "COVSEG_MEDSEG100"
EMA_DECAY = 0.99
"""Per-step decay of the ``ema`` variant: ~100 steps (about 12 epochs of 64 slices in batches of 8)."""
CANDIDATES: dict[str, dict[str, Any]] = {
    "nnunet-aug": {"augmentation": "nnunet"},
    "foreground": {"foreground_oversampling": 0.33},  # nnU-Net's share of foreground patches
    "ema": {"ema_decay": EMA_DECAY},
    # nnU-Net's optimiser and schedule (Isensee et al. 2021): SGD, Nesterov 0.99, lr 0.01, poly, wd 3e-5
    "sgd-poly": {"optimizer": "sgd", "momentum": 0.99, "lr": 0.01, "scheduler": "poly", "weight_decay": 3e-5},
}
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "default": ("default", {}),
    **{name: ("default", values) for name, values in CANDIDATES.items()},
    "all": ("default", {key: value for values in CANDIDATES.values() for key, value in values.items()}),
    "reference": ("reference", {}),
}
"""Each variant: (recipe, settings on top)."""
CLASSES = ("ground-glass", "consolidation", "effusion")
ONE_PROCESS = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
"""The script trains in one process: the batch check's context."""


def variant_config(variant: str, seed: int, base: Mapping[str, Any], out: Path) -> TrainConfig:
    """The TrainConfig of one run: the variant's recipe and settings, then the shared ``base``."""
    recipe, values = VARIANTS[variant]
    return TrainConfig.from_recipe("unet", recipe=recipe, **{**values, **base, "seed": seed,
                                                           "out": str(out / variant / f"seed{seed}")})


RUN_SETTINGS_IGNORED = ("out", "device", "workers")
"""Settings that do not change a run's result (or name where it went): a finished run is reused
across them."""


def finished_run(config: TrainConfig) -> Path | None:
    """A finished run (with summary.json) under ``config.out`` trained with the same settings, if any.

    Compares the settings this script sets (the variant's, the shared ones, the recipe and seed) with
    each run's config.json; a run with any other value is not reused."""
    wanted = config.to_dict()
    keys = [key for key in (*config.sources, "recipe", "seed", "model", "model_options")
            if key not in RUN_SETTINGS_IGNORED]  # model_options too: a full unet never reuses a narrow one
    for summary in sorted(Path(config.out).glob(f"{config.model}/*/summary.json")):
        stored = json.loads((summary.parent / "config.json").read_text())
        if all(stored.get(key) == wanted.get(key) for key in keys):
            return summary.parent
    return None


def fixed_split(base: Mapping[str, Any], test_fraction: float, val_fraction: float) -> Split:
    """One split (seed 0) that every variant and seed trains, validates and tests on.

    Raises CovsegError when ``--batch-size`` exceeds its training slices, as ``covseg train`` would
    (checked here, before anything is written)."""
    config = TrainConfig.from_recipe("unet", **base)
    slices, _ = load_run_slices(config)
    split = make_split(slices.ids, val_fraction=val_fraction, seed=0, test_fraction=test_fraction)
    per_process_batch(config, ONE_PROCESS, len(split.train_ids))
    return split


def check_model_options(config: TrainConfig) -> None:
    """Build the model on the meta device (no memory, no weights): a bad ``--model-option`` (a width
    out of range, an option unet has not) is one error line before anything is written."""
    with torch.device("meta"):
        create_model(config.model, **config.model_options)


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarise(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean (and std) over the seeds of one variant's summary.json files."""
    tests = [summary["test"] for summary in summaries]
    test_miou = [test["metrics"]["miou"] for test in tests]
    intervals = [test["intervals"].get("miou") for test in tests]
    known = [interval for interval in intervals if interval]
    row = {
        "runs": len(summaries),
        "test_miou": _mean_std(test_miou),
        "test_interval": (statistics.fmean(low for low, _ in known),
                          statistics.fmean(high for _, high in known)) if known else None,
        "lesion_miou": _mean_std([test["metrics"]["lesion_miou"] for test in tests]),
        "class_iou": {name: statistics.fmean(test["metrics"].get(f"iou/{name}", math.nan) for test in tests)
                      for name in CLASSES},
        "val_miou": _mean_std([summary["best_metrics"].get("miou", math.nan) for summary in summaries]),
        "wall_time_s": statistics.fmean(summary["wall_time_s"] for summary in summaries),
    }
    return row


def test_confusions(run_dirs: Sequence[str]) -> np.ndarray:
    """The runs' per-slice test confusions, (S, N, C, C), every run's slices in one order (by id)."""
    stacks = []
    for run_dir in run_dirs:
        ids, confusions = read_slice_confusions(Path(run_dir) / SLICE_CONFUSIONS)["test"]
        order = np.argsort(ids)
        stacks.append((sorted(ids), confusions[order]))
    if any(ids != stacks[0][0] for ids, _ in stacks):
        raise SystemExit(f"the runs {', '.join(run_dirs)} were not scored on the same test slices")
    return np.stack([confusions for _, confusions in stacks])


def differences(runs: Mapping[str, Sequence[str]], base: str = "default") -> dict[str, Any]:
    """Each variant's seed-averaged test mIoU minus ``base``'s, with the paired bootstrap interval."""
    if base not in runs:
        return {}
    reference = test_confusions(runs[base])
    result = {}
    for variant, run_dirs in runs.items():
        if variant != base:
            delta, interval = paired_difference(test_confusions(run_dirs), reference, "miou")
            result[variant] = {"delta": delta, "interval": interval}
    return result


def _verdict(interval: Sequence[float] | None) -> str:
    if interval is None:
        return "-"
    return "better" if interval[0] > 0 else "worse" if interval[1] < 0 else "no difference"


def markdown_table(rows: Mapping[str, Mapping[str, Any]], paired: Mapping[str, Mapping[str, Any]]) -> str:
    """The ablation table, one row per variant, with the paired difference to ``default``."""
    header = ["variant", "runs", "test mIoU", "test 95% CI (mean)", "lesion mIoU",
              *(f"IoU {name}" for name in CLASSES), "val mIoU", "wall time (s)",
              "Δ test mIoU vs default [paired 95% CI]", "verdict"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant, row in rows.items():
        interval = row["test_interval"]
        difference = paired.get(variant)
        if difference is None:
            delta = verdict = "-"
        else:
            low_high = difference["interval"]
            delta = (f"{difference['delta']:+.3f}" + ("" if low_high is None else
                                                      f" [{low_high[0]:+.3f}, {low_high[1]:+.3f}]"))
            verdict = _verdict(low_high)
        cells = [variant, str(row["runs"]), _pm(row["test_miou"]),
                 "-" if interval is None else f"{interval[0]:.3f}-{interval[1]:.3f}", _pm(row["lesion_miou"]),
                 *(f"{row['class_iou'][name]:.3f}" for name in CLASSES), _pm(row["val_miou"]),
                 f"{row['wall_time_s']:.0f}", delta, verdict]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _pm(value: tuple[float, float]) -> str:
    return f"{value[0]:.3f} ± {value[1]:.3f}"


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=DefaultsHelpFormatter,
                                     epilog="The markdown table goes to stdout; OUT/ablation.json keeps it.")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        metavar="VARIANT",
                        help=f"Variants to run, of {', '.join(VARIANTS)} ('all' is the variant with every "
                        "candidate on; leaving --variants out runs each variant).")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Training seeds.")
    parser.add_argument("--epochs", type=int, default=100, help="Epochs of every run.")
    parser.add_argument("--image-size", type=int, default=64, help="Square side of the slices (px).")
    parser.add_argument("--batch-size", type=int, default=8, help="Global batch.")
    parser.add_argument("--data", help=f"Data path, or 'phantom' for the embedded phantom (default: "
                        f"${MEDSEG100_VARIABLE}).")
    parser.add_argument("--dataset-option", action="append", default=[], help="key=value (repeatable).")
    parser.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE",
                        help="unet's option, as covseg train's --model-option (e.g. base_channels=16 for a "
                        "quicker, narrower ablation; repeatable).")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="Share held out as the test set.")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="Share of the rest that validates.")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers.")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N.")
    parser.add_argument("--out", type=Path, help="Where the runs go; a rerun reuses the finished ones there "
                        "(default: a temporary folder, removed at the end).")
    arguments = parser.parse_args(argv)
    for name in ("variants", "seeds"):
        values = getattr(arguments, name)
        repeated = sorted({str(value) for value in values if values.count(value) > 1})
        if repeated:  # a repeat would count one run twice in the mean and std
            parser.error(f"--{name}: {repeated[0]} given twice; each runs once")
    arguments.data = arguments.data or os.environ.get(MEDSEG100_VARIABLE)
    if arguments.data is None:
        parser.error(f"give --data or set ${MEDSEG100_VARIABLE}")
    return arguments


def main(argv: Sequence[str] | None = None) -> None:
    """Train every variant x seed, score each on the fixed test set, print the markdown table."""
    arguments = parse_arguments(argv)
    base: dict[str, Any] = {"epochs": arguments.epochs, "image_size": arguments.image_size,
                            "batch_size": arguments.batch_size, "workers": arguments.workers,
                            "device": arguments.device,
                            "dataset_options": parse_dataset_options(arguments.dataset_option)}
    if arguments.model_option:  # parsed as covseg train parses them, errors named --model-option
        base["model_options"] = TrainConfig.resolve(
            "unet", options={"model_options": arguments.model_option}, from_cli=True).model_options
    if arguments.data != "phantom":
        base["data"] = arguments.data
    # Every setting is checked (one error line) before --out is made.
    parse_device(arguments.device)
    for variant in arguments.variants:
        variant_config(variant, arguments.seeds[0], base, arguments.out or Path("unused"))
    check_model_options(TrainConfig.from_recipe("unet", **base))
    split = fixed_split(base, arguments.test_fraction, arguments.val_fraction)
    with tempfile.TemporaryDirectory(prefix="covseg-ablation-") as scratch:
        folder = arguments.out if arguments.out is not None else Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        split.save(folder / "split.json")
        base["split_file"] = str(folder / "split.json")
        rows, runs = {}, {}
        for variant in arguments.variants:
            summaries = []
            for seed in arguments.seeds:
                config = variant_config(variant, seed, base, folder)
                reused = finished_run(config)
                run_dir = reused if reused is not None else train(config)
                summary = json.loads((run_dir / "summary.json").read_text())
                summaries.append(summary)
                runs.setdefault(variant, []).append(str(run_dir))
                print(f"{variant} seed {seed}: test mIoU {summary['test']['metrics']['miou']:.3f}, "
                      f"{summary['wall_time_s']:.0f} s ({run_dir}{', reused' if reused else ''})", flush=True)
            rows[variant] = summarise(summaries)
        paired = differences(runs)
        write_json(folder / "ablation.json", {
            "settings": {**base, "test_fraction": arguments.test_fraction, "seeds": arguments.seeds},
            "variants": {name: VARIANTS[name] for name in arguments.variants}, "rows": rows, "runs": runs,
            "differences_vs_default": paired})
        options = "".join(f" {option}" for option in arguments.model_option)
        print(f"\nunet{options}, {arguments.epochs} epochs, {arguments.image_size} px, "
              f"batch {arguments.batch_size}, "
              f"seeds {' '.join(map(str, arguments.seeds))}, test set {arguments.test_fraction:g} of "
              f"{arguments.data} (one fixed split)\n")
        print(markdown_table(rows, paired))


if __name__ == "__main__":
    run_script(main)
