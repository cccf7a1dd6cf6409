"""The model comparison behind ``covseg benchmark``: every model x seed trained under one set of
settings and one split, measured, and reported as results.md / .csv / .json and PNG plots.

Modules: ``plan`` (pairs, shared settings, the benchmark folder and its jobs index), ``runner``
(pairs in-process or one worker process per GPU, failures isolated), ``worker`` (the worker
process), ``measure`` (parameters, GFLOPs, ONNX CPU latency), ``hardware`` (CPU/GPU names),
``report`` (the numbers and the three result files), ``montage`` and ``plots`` (the pictures),
``api`` (:func:`run_benchmark`, :func:`gather`).
"""

from covseg.benchmark.api import BenchmarkOutcome, gather, run_benchmark
from covseg.benchmark.plan import BenchmarkSettings, Pair, Plan, load_plan, make_pairs

__all__ = ["BenchmarkOutcome", "BenchmarkSettings", "Pair", "Plan", "gather", "load_plan", "make_pairs",
           "run_benchmark"]
