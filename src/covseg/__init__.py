"""covseg: train, compare and ship segmentation models for COVID-19 lesions in chest CT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("covseg")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

CLASS_NAMES: tuple[str, ...] = ("background", "ground-glass", "consolidation", "effusion")
"""Label values of the masks: 0 background, 1 ground-glass opacity, 2 consolidation, 3 pleural effusion."""

__all__ = ["CLASS_NAMES", "__version__"]
