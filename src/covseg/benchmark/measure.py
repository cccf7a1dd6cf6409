"""What a model costs: parameters, GFLOPs at 512x512 and ONNX latency on the CPU.

- Parameters and FLOPs come from one forward pass on the ``meta`` device under
  :class:`torch.utils.flop_counter.FlopCounterMode`: shapes only, no memory, no arithmetic, well
  under a second even for ResNet-101 models. FLOPs are counted as torch counts them (a
  multiply-add is 2 FLOPs), for one 3x512x512 slice.
- Latency: the trained best.pt is exported with covseg's own exporter
  (:func:`covseg.export.export_model`, parity-checked against PyTorch) and run by onnxruntime's CPU
  provider on one slice of ``size`` x ``size``; the median of ``runs`` timed runs after warm-up.

Measurements are cached in ``measurements/<model>.json`` of the benchmark folder, keyed by what
they depend on, so a rerun or a ``--report-only`` does not measure again.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from covseg import CLASS_NAMES
from covseg.benchmark.hardware import cpu_name
from covseg.core.errors import CovsegError
from covseg.core.registry import get_registry
from covseg.files import one_line, read_json_object, write_json

FLOPS_SIZE = 512
DEFAULT_LATENCY_SIZE = 256
LATENCY_RUNS = 10
LATENCY_WARMUP = 2
MEASUREMENTS_DIR = "measurements"


@dataclass
class ModelMeasurements:
    """One model's cost figures; ``latency_ms`` is None when not measured (``latency_error`` says why)."""

    model: str
    params_m: float
    gflops: float
    flops_size: int
    latency_ms: float | None
    latency_size: int
    latency_threads: int | None
    latency_source: str | None
    latency_error: str | None = None
    cpu: str = ""
    latency_earlier: bool = False
    """The latency is the one an earlier run into this folder measured (cached); this run was given
    ``--latency-size 0`` and measured none."""


def params_and_gflops(model_name: str, size: int = FLOPS_SIZE) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one 3 x size x size forward pass).

    Counted on the ``meta`` device; a plugin model that cannot run there (e.g. one that reads a
    tensor's value in its forward) is counted on the CPU instead, which gives the same numbers.
    """
    try:
        return _count(model_name, size, torch.device("meta"))
    except (NotImplementedError, RuntimeError):
        return _count(model_name, size, torch.device("cpu"))


def _count(model_name: str, size: int, device: torch.device) -> tuple[float, float]:
    factory = get_registry().model(model_name).factory
    with device:
        model = factory(num_classes=len(CLASS_NAMES), in_channels=3, pretrained=False)
    model.eval()
    params = sum(parameter.numel() for parameter in model.parameters())
    image = torch.zeros(1, 3, size, size, device=device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    return params / 1e6, counter.get_total_flops() / 1e9


def onnx_cpu_latency(run_dir: Path, size: int = DEFAULT_LATENCY_SIZE, runs: int = LATENCY_RUNS,
                     threads: int | None = None) -> tuple[float, int]:
    """(median milliseconds, threads) of onnxruntime's CPU provider on one 1 x 3 x size x size slice."""
    from covseg.export import export_model, load_export_source
    from covseg.onnx import OnnxSegmenter, cpu_cores

    exported = export_model(load_export_source(run_dir), trace_size=size)
    threads = threads or cpu_cores()
    segmenter = OnnxSegmenter(exported.model_bytes, device="cpu", threads=threads,
                              origin=f"the ONNX export of {run_dir}")
    image = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(LATENCY_WARMUP):
        segmenter.logits(image)
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        segmenter.logits(image)
        timings.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(timings), threads


def measure_model(out: Path, model_name: str, run_dir: Path | None, latency_size: int) -> ModelMeasurements:
    """Measure (or read from the cache) one model; ``run_dir`` is the trained run exported for latency.

    ``latency_size`` 0 skips measuring the latency; a latency an earlier run measured on the same
    best.pt is kept (``latency_earlier``, at its own size), not dropped. An export or onnxruntime
    failure is kept as ``latency_error`` rather than stopping the report: the other figures still
    stand.
    """
    cache = Path(out) / MEASUREMENTS_DIR / f"{model_name}.json"
    source = str(run_dir) if run_dir is not None and latency_size > 0 else None
    cached = _read_cache(cache)
    if (latency_size == 0 and run_dir is not None and cached is not None and cached.model == model_name
            and cached.latency_ms is not None and cached.latency_source == str(run_dir)
            and cached.flops_size == FLOPS_SIZE):
        return dataclasses.replace(cached, latency_earlier=True)  # the cache itself stays as it is
    if (cached is not None and cached.model == model_name and cached.latency_size == latency_size
            and cached.latency_source == source and cached.flops_size == FLOPS_SIZE):
        return cached
    params_m, gflops = params_and_gflops(model_name, FLOPS_SIZE)
    latency = threads = error = None
    if source is not None:
        try:
            latency, threads = onnx_cpu_latency(Path(source), latency_size)
        except Exception as failure:  # an unexportable plugin model still gets its other figures
            error = one_line(failure)
    measurements = ModelMeasurements(model_name, params_m, gflops, FLOPS_SIZE, latency, latency_size,
                                     threads, source, error, cpu_name())
    write_json(cache, dataclasses.asdict(measurements))
    return measurements


def _read_cache(path: Path) -> ModelMeasurements | None:
    if not path.is_file():
        return None
    try:
        return ModelMeasurements(**read_json_object(path))
    except (CovsegError, TypeError):
        return None  # an unreadable or older cache is simply measured again
