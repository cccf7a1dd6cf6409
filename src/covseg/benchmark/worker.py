"""One benchmark pair in its own process: ``python -m covseg.benchmark.worker DIR MODEL SEED``.

Started by :func:`covseg.benchmark.runner.run_pairs` for ``--jobs N`` with CUDA_VISIBLE_DEVICES
set to the worker's GPU and this machine's settings (``--device``, ``--workers``, ...) as JSON in
``--run-options``. It reads the shared settings from ``DIR/benchmark.json``, trains the pair
and writes the pair's job record; the exit code is 0 when the pair finished, 1 when it failed.
"""

from __future__ import annotations

import argparse
import sys

from covseg.benchmark.plan import DONE, Pair, RunOptions, load_plan
from covseg.benchmark.runner import run_pair
from covseg.commands._logging import setup_logging
from covseg.commands._progress import TrainingProgress
from covseg.core.errors import CovsegError
from covseg.terminal import console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m covseg.benchmark.worker", description=__doc__)
    parser.add_argument("out", help="the benchmark folder (holds benchmark.json)")
    parser.add_argument("model")
    parser.add_argument("seed", type=int)
    parser.add_argument("--run-options", default='{"values": {}}',
                        help="this machine's settings as JSON (RunOptions.to_json)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads of this worker")
    args = parser.parse_args(argv)
    setup_logging()  # the log file shows what `covseg train` shows
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        plan = load_plan(args.out)
        options = RunOptions.from_json(args.run_options)
        record = run_pair(plan, Pair(args.model, args.seed), options, [TrainingProgress(console)])
    except CovsegError as error:
        console.print(f"error: {error}", highlight=False, soft_wrap=True)
        return 2
    return 0 if record.status == DONE else 1


if __name__ == "__main__":
    sys.exit(main())
