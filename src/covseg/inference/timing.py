"""Seconds spent per stage of a prediction (read, normalise, infer, write, ...), for benchmarks.

``benchmarks/volume_speed.py`` passes a :class:`StageTimer` through :func:`covseg.inference.run_case`
to see where the time of ``covseg predict`` goes; without one, :data:`NO_TIMER` costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimer:
    """Wall-clock seconds per named stage, summed over every time the stage ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


class _NoTimer(StageTimer):
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        yield


NO_TIMER: StageTimer = _NoTimer()
"""The timer of an ordinary prediction: records nothing."""
