"""Shared fixtures. The real MedSeg slices are read from ``$COVSEG_MEDSEG100`` (default
``../shared/data/medseg100`` beside the repository); tests that need them skip on a user's clone
without them, and fail when ``COVSEG_REQUIRE_DATA=1`` (set by .ci/run)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
MEDSEG100_VARIABLE = "COVSEG_MEDSEG100"
DEFAULT_MEDSEG100 = REPO_ROOT.parent / "shared" / "data" / "medseg100"

# Two cores: keep torch from oversubscribing them when pytest runs model code.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def medseg100_path() -> Path:
    return Path(os.environ.get(MEDSEG100_VARIABLE, DEFAULT_MEDSEG100))


@pytest.fixture(scope="session")
def medseg100_dir() -> Path:
    """The folder of the 80 real MedSeg slices (images/ and masks/ PNGs)."""
    path = medseg100_path()
    if not (path / "images").is_dir():
        message = f"real MedSeg slices not found at {path} (set ${MEDSEG100_VARIABLE})"
        if os.environ.get("COVSEG_REQUIRE_DATA") == "1":
            pytest.fail(message + "; COVSEG_REQUIRE_DATA=1 makes them required")
        pytest.skip(message)
    return path
