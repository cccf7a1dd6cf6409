"""Run ``covseg`` in a fresh interpreter and report which heavy packages it loaded or tried to load.

``blocked`` packages are made unimportable by a ``sys.meta_path`` finder that is installed before
covseg is imported; it records every attempt, so code that catches the ImportError and carries on
is still caught. The child process prints one JSON line on stderr at exit: the attempted imports and
the watched packages found in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HEAVY = ("torch", "torchvision", "timm", "albumentations", "cv2", "onnxruntime", "highdicom")
"""Packages a command must not load before it needs them (issue 12 names the first five; highdicom,
of the optional ``covseg[dicom]``, loads only for DICOM SEG output). pydicom is not here: where it
is installed, nibabel's NIfTI module imports it (for its DICOM header extension)."""

MARKER = "covseg-import-check: "

_CHILD = r"""
import json, sys

BLOCKED = tuple(json.loads(sys.argv[1]))
WATCHED = tuple(json.loads(sys.argv[2]))
attempted = []


class BlockImports:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            attempted.append(name)
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, BlockImports())
sys.argv = ["covseg", *sys.argv[3:]]
try:
    from covseg.cli import main

    main()
finally:
    loaded = sorted(name for name in WATCHED if name in sys.modules)
    sys.stderr.write("\n" + MARKER + json.dumps({"attempted": attempted, "loaded": loaded}) + "\n")
""".replace("MARKER", repr(MARKER))


@dataclass(frozen=True)
class CovsegRun:
    returncode: int
    stdout: str
    stderr: str
    attempted: list[str]
    loaded: list[str]


def run_covseg(
    *arguments: object,
    blocked: tuple[str, ...] = (),
    watched: tuple[str, ...] = HEAVY,
    cwd: Path | None = None,
) -> CovsegRun:
    """``covseg ARGUMENTS`` in a new interpreter with ``blocked`` unimportable."""
    command = [sys.executable, "-c", _CHILD, json.dumps(blocked), json.dumps(watched), *map(str, arguments)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=300, check=False)
    lines = [line for line in result.stderr.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise AssertionError(f"the child process reported nothing:\n{result.stdout}\n{result.stderr}")
    report = json.loads(lines[-1][len(MARKER) :])
    stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith(MARKER))
    return CovsegRun(result.returncode, result.stdout, stderr.strip(), report["attempted"], report["loaded"])
