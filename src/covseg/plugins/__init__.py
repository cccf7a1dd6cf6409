"""What plugin authors import: the hook marker, the entry records and shared building blocks.

A third-party plugin needs nothing else from covseg::

    from covseg.plugins import ModelEntry, hookimpl
"""

from covseg.core.entries import CTSlices, DatasetEntry, MetricEntry, ModelEntry
from covseg.core.errors import CovsegError
from covseg.core.hookspecs import hookimpl

__all__ = ["CTSlices", "CovsegError", "DatasetEntry", "MetricEntry", "ModelEntry", "hookimpl"]
