"""Every file covseg writes, and the JSON it reads back: one mechanism, one wording for errors.

- :func:`atomic_write` is the only way covseg puts a file on disk. The content goes to a temporary
  file beside the target, is flushed and fsync'ed, then renamed over the target (``os.replace``):
  a reader sees the old file or the new one, never half of one. A failed write (disk full,
  read-only folder, permission denied, a folder where the file should be) removes its temporary
  file and raises one :class:`~covseg.core.errors.CovsegError` line naming the target. Temporary
  files of a process that died mid-write (killed, power cut) are removed by the next write into the
  same folder. Ctrl-C and SIGTERM arriving mid-write are held until the file is complete
  (:func:`interrupts_deferred`).
- :func:`write_json` / :func:`read_json_object` / :func:`read_json_lines`: strict JSON (NaN and
  infinities become null), one error wording that names the file (and the line of a JSON-lines
  file).
- :func:`one_line`: any exception as one line for messages and tables.
- :func:`safe_file_name`: a file or folder name derived from user input (a case or slice id) that
  can never leave the folder it is joined to.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from covseg.core.errors import CovsegError

TEMPORARY_SUFFIX = ".covseg-tmp"
STALE_AFTER_S = 24 * 3600
"""A temporary file this old is removed whoever wrote it (a crashed job on another host)."""
ONE_LINE_LIMIT = 300
"""Characters of an exception message kept by :func:`one_line`."""

_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _temporary_name(target: Path) -> str:
    # Host and pid let a later write tell a dead writer's leftovers from a live writer's file.
    return f".{target.name}.{_HOST}-{os.getpid()}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or we cannot tell): leave its file alone
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files in ``folder`` left by interrupted writes; returns what was removed.

    A temporary file is stale when the process that wrote it (same host) is gone, or when it is
    older than :data:`STALE_AFTER_S`. Files of live writers are left alone.
    """
    removed = []
    try:
        candidates = [path for path in Path(folder).iterdir() if path.name.endswith(TEMPORARY_SUFFIX)]
    except OSError:
        return removed
    pattern = re.compile(r"\.(?P<host>[A-Za-z0-9-]+)-(?P<pid>\d+)\.[0-9a-f]+" + re.escape(TEMPORARY_SUFFIX))
    now = time.time()
    for path in candidates:
        match = pattern.search(path.name)
        try:
            old = now - path.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        dead = match is not None and match["host"] == _HOST and not _process_alive(int(match["pid"]))
        if old or dead:
            try:
                path.unlink()
                removed.append(path)
            except OSError:
                continue
    return removed


def describe_os_error(error: OSError, path: Path | str | None = None, action: str = "write") -> str:
    """``cannot write PATH: No space left on device``; PATH is ``path``, else the one the error names."""
    where = path if path is not None else error.filename
    reason = error.strerror or one_line(error)
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device (free some space or choose another folder)"
    elif error.errno == errno.EDQUOT:
        reason = "disk quota exceeded"
    return f"cannot {action} {where}: {reason}" if where is not None else f"cannot {action}: {reason}"


INTERRUPT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then deliver them as if they came just now.

    A signal landing inside ``torch.save`` leaves its zip writer half-closed and turns the
    interrupt into a RuntimeError; deferring it keeps a checkpoint whole and the interrupt an
    interrupt. Only the main thread can swap signal handlers (and only it runs them).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in INTERRUPT_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])


def _probe_write(folder: Path) -> None:
    """Write and remove one empty temporary file (the writer's own naming) in the existing ``folder``."""
    probe = folder / _temporary_name(folder / "probe")
    try:
        _open_for_write(probe).close()
    finally:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)


def _why_not_in(error: OSError, folder: Path) -> str:
    """Why nothing new can be made in the existing ``folder``, worded for the folder, not the errno:
    ENOENT there means a file system that takes no new entries (/proc, /sys), not a missing path."""
    if error.errno == errno.ENOENT:
        return f"{folder} takes no new files or folders"
    if error.errno == errno.EROFS:
        return f"{folder} is on a read-only file system"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write in {folder}"
    return describe_os_error(error, folder).removeprefix(f"cannot write {folder}: ")


def check_creatable(folder: Path | str, option: str | None = None) -> Path:
    """Prove that ``folder`` (which need not exist yet) can be made and written, creating nothing:
    one empty file is written and removed in its nearest existing ancestor. For commands that read
    their input before they make their output folder (``covseg train --out``): a read-only place is
    refused before the slow work, and a refused input still leaves no empty folder behind.

    Raises CovsegError, prefixed ``OPTION: `` when ``option`` (e.g. ``--out runs``) is given:
    ``cannot write FOLDER: reason`` for an existing folder; ``cannot create MISSING: why`` naming
    the first folder that would have to be made (``cannot create /proc/x: /proc takes no new files
    or folders``); ``cannot create FOLDER: ANCESTOR is a file, not a folder``.
    """
    folder = Path(folder)
    prefix = f"{option}: " if option else ""
    existing = next(path for path in (folder, *folder.parents) if path.exists() or path == path.parent)
    if not existing.is_dir():
        raise CovsegError(f"{prefix}cannot create {folder}: {existing} is a file, not a folder")
    try:
        _probe_write(existing)
    except OSError as error:
        if existing == folder:
            raise CovsegError(prefix + describe_os_error(error, folder)) from None
        missing = next(path for path in (folder, *folder.parents) if path.parent == existing)
        raise CovsegError(f"{prefix}cannot create {missing}: {_why_not_in(error, existing)}") from None
    return folder


def check_writable(folder: Path | str, option: str | None = None) -> Path:
    """Make ``folder`` (and its parents) and prove a file can be written there, before long work
    whose result goes there, so that a read-only folder or full disk is found first.

    Checked by :func:`check_creatable` first (its errors and wording), so a refusal makes nothing.
    """
    folder = check_creatable(folder, option)
    prefix = f"{option}: " if option else ""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe_write(folder)
    except OSError as error:
        raise CovsegError(prefix + describe_os_error(error, folder)) from None
    return folder


@contextlib.contextmanager
def folder_made_for(folder: Path | str) -> Iterator[Path]:
    """Make ``folder`` (and missing parents) for the block; when the block fails, remove again the
    folders this made that are still empty, never one that existed before nor one holding a file
    (e.g. a kept partial download). Yields ``folder``.
    """
    folder = Path(folder)
    made = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CovsegError(describe_os_error(error, folder, "create the folder")) from None
    try:
        yield folder
    except BaseException:
        for path in made:
            try:
                path.rmdir()  # only an empty folder goes
            except OSError:
                break
        raise


def _open_for_write(path: Path) -> IO[bytes]:
    """Open the temporary file (the permissions a plain ``open()`` gives); tests fake a full disk here."""
    return open(path, "xb")


def atomic_write(path: Path | str, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(handle)`` with a binary file handle, then rename the file onto ``path``.

    ``write`` gets an open binary file (``torch.save``, ``PIL.Image.save(..., format=...)``,
    ``Figure.savefig(..., format=...)`` and ``handle.write(bytes)`` all take one). The parent
    folder is created. Raises :class:`CovsegError` naming ``path`` when the disk is full, the
    folder is read-only or ``path`` is a folder; nothing half-written is left behind.
    """
    path = Path(path)
    if path.is_dir():
        raise CovsegError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CovsegError(describe_os_error(error, path.parent, "create the folder")) from None
    remove_stale_temporaries(path.parent)
    temporary = path.parent / _temporary_name(path)
    with interrupts_deferred():
        try:
            with _open_for_write(temporary) as handle:
                write(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except OSError as error:
            _discard(temporary)
            raise CovsegError(describe_os_error(error, path)) from None
        except BaseException:
            _discard(temporary)
            raise
    return path


def _discard(temporary: Path) -> None:
    # The error being reported matters more than a leftover, which the next write removes.
    with contextlib.suppress(OSError):
        temporary.unlink(missing_ok=True)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda handle: handle.write(data))


def write_text(path: Path | str, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """NaN and infinities become None (JSON null): strict JSON readers reject them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def json_text(data: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``data`` (non-finite floats as null), newline-terminated when indented."""
    text = json.dumps(json_safe(data), indent=indent, allow_nan=False)
    return text + "\n" if indent is not None else text


def write_json(path: Path | str, data: Any) -> Path:
    """Write ``data`` as indented strict JSON, atomically."""
    return write_text(path, json_text(data))


def write_json_lines(path: Path | str, records: Iterable[Any]) -> Path:
    """Write one strict JSON object per line, atomically (the whole file at once)."""
    return write_text(path, "".join(json_text(record, indent=None) + "\n" for record in records))


def _read_text(path: Path, missing: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CovsegError(f"{path} does not exist{missing}") from None
    except IsADirectoryError:
        raise CovsegError(f"{path} is a folder, not a file") from None
    except UnicodeDecodeError as error:
        raise CovsegError(f"{path} is not UTF-8 text: {one_line(error)}") from None
    except OSError as error:
        raise CovsegError(describe_os_error(error, path, "read")) from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def read_json(path: Path | str, missing: str = "") -> Any:
    """Any JSON value from ``path``; one-line errors naming the file. ``missing`` explains absence."""
    path = Path(path)
    text = _read_text(path, missing)
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError, RecursionError) as error:
        raise CovsegError(f"{path} is not valid JSON: {one_line(error)}") from None


def read_json_object(path: Path | str, missing: str = "") -> dict[str, Any]:
    """A JSON file holding an object, as a dict; one-line errors naming the file.

    ``missing`` is appended to the message for a file that does not exist (e.g. what it means).
    """
    data = read_json(path, missing)
    if not isinstance(data, dict):
        raise CovsegError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def read_json_lines(path: Path | str, missing: str = "") -> list[dict[str, Any]]:
    """The objects of a JSON-lines file (one per non-blank line); errors name the file and line."""
    path = Path(path)
    records = []
    for number, line in enumerate(_read_text(path, missing).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_reject_constant)
        except (json.JSONDecodeError, ValueError, RecursionError) as error:
            raise CovsegError(f"{path} line {number} is not valid JSON (a cut or damaged line?): "
                              f"{one_line(error)}") from None
        if not isinstance(record, dict):
            raise CovsegError(f"{path} line {number} holds a JSON {type(record).__name__}, not an object")
        records.append(record)
    return records


def one_line(error: BaseException, limit: int = ONE_LINE_LIMIT) -> str:
    """An exception as one line: CovsegError's own message, else ``Type: message``, cut at ``limit``."""
    message = " ".join(str(error).split())
    if len(message) > limit:
        message = message[: limit - 1] + "…"
    if isinstance(error, CovsegError):
        return message or "error"
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")
NAME_LIMIT = 120


def safe_file_name(text: str, fallback: str = "case") -> str:
    """A file or folder name made from user text that stays inside the folder it is joined to.

    Path separators, control characters and anything outside ``[A-Za-z0-9._+-]`` become ``_``;
    leading dots are dropped (no ``..``, no hidden files); the result is cut to
    :data:`NAME_LIMIT` characters and is never empty (``fallback``).
    """
    name = _UNSAFE_NAME.sub("_", str(text)).lstrip(".")
    name = name[:NAME_LIMIT].rstrip(".") if len(name) > NAME_LIMIT else name
    return name or fallback


def child_path(folder: Path, name: str) -> Path:
    """``folder / name`` after checking that it stays inside ``folder`` (defence in depth)."""
    folder = Path(folder)
    candidate = folder / name
    root = folder.resolve()
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise CovsegError(f"refusing to write {candidate}: it resolves outside {folder}")
    return candidate
