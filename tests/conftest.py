"""Shared fixtures. The real MedSeg slices are read from ``$COVSEG_MEDSEG100`` (default
``../shared/data/medseg100`` beside the repository); tests that need them skip on a user's clone
without them, and fail when ``COVSEG_REQUIRE_DATA=1`` (set by .ci/run)."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

# What torch and the processes the tests start put in the temporary folder (torch makes
# torchinductor_<user> when it imports torch._dynamo; torchrun makes torchelastic_*) goes into one
# folder of this session, removed when the session ends: the suite leaves nothing behind. Set
# before torch is imported; the processes tests start inherit it.
SESSION_TEMP = Path(tempfile.mkdtemp(prefix="covseg-tests-"))
os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(SESSION_TEMP / "torchinductor")
os.environ["TMPDIR"] = str(SESSION_TEMP)

import torch  # noqa: E402  (after the temporary folder is set)

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


def _mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                            capture_output=True, check=False)
    return result.returncode == 0


def _unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


class _FullDiskFile(io.BufferedWriter):
    """A file whose every write fails as on a full disk."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def full_disk(tmp_path, monkeypatch) -> Path:
    """A folder on a full disk: a tiny tmpfs filled up when this process may mount one (root on
    Linux), else covseg's writer is patched so that every write fails with ENOSPC."""
    folder = tmp_path / "full"
    if _mount_tmpfs(folder, "size=64k"):
        filler = folder / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as handle:
            while True:
                handle.write(b"\0" * 4096)
                handle.flush()
        try:
            yield folder
        finally:
            _unmount(folder)
        return
    folder.mkdir(parents=True, exist_ok=True)
    import covseg.files

    monkeypatch.setattr(covseg.files, "_open_for_write",
                        lambda path: _FullDiskFile(io.FileIO(path, "xb")))
    yield folder


@pytest.fixture
def read_only_folder(tmp_path) -> Path:
    """A folder nobody can write into, root included: a read-only tmpfs where mounting is allowed,
    else a folder without write permission (skipped for root, who may write there anyway)."""
    folder = tmp_path / "read-only"
    if _mount_tmpfs(folder, "ro,size=64k"):
        try:
            yield folder
        finally:
            _unmount(folder)
        return
    if os.geteuid() == 0:
        pytest.skip("cannot mount a read-only tmpfs, and root writes into read-only folders")
    folder.chmod(0o500)
    try:
        yield folder
    finally:
        folder.chmod(0o700)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the platform-resolution dry runs (network-bound, minutes) while the rest of the suite runs."""
    for item in session.items:
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith("test_install_platforms"):
            module.start_early()
            return


def pytest_sessionfinish(session: pytest.Session) -> None:
    for item in getattr(session, "items", []):
        module = getattr(item, "module", None)
        if module is not None and module.__name__.endswith("test_install_platforms"):
            module.stop_early()
            break
    shutil.rmtree(SESSION_TEMP, ignore_errors=True)
